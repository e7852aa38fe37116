"""Pipeline health: anomaly detection over the hourly stats, stored alerts, simulator, charts.

- `anomaly`: pure detectors over hourly series (drops, gradual declines, error-rate rises).
- `alerts`: the `alerts` table, `evaluate()` (detect, store, mail once per open/recovery).
- `dead_letters`: the work queue's dead-letter count as an incident, judged by `evaluate()`.
- `simulate`: realistic synthetic traffic with injected outages (`python -m health.simulate`).
- `report`: `health_svg()`, the server-side chart the dashboard's /health page embeds.
"""
