"""`python -m pipeline.simulate`: simulated traffic with outages (see pipeline.health.simulate)."""

from pipeline.health.simulate import main

if __name__ == "__main__":
    raise SystemExit(main())
