"""The embedded worker: a workspace directory with the pipeline's environment.

There is no separate machine; "launching" creates `$TELEMETRY_DATA_DIR/workers/<id>-<name>/`
with an `env.sh` that points at this installation's Python and stores, and the command to
enter it. Terminating deletes the workspace (like terminating an instance deletes its disk).
"""

from __future__ import annotations

import datetime as dt
import logging
import shlex
import shutil
import sys
from pathlib import Path

from dashboard.workers.base import LaunchResult, WorkerProvider, WorkerProviderError
from pipeline.config import Settings

log = logging.getLogger(__name__)


class LocalProvider(WorkerProvider):
    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = Path(settings.data_dir) / "workers"

    def _env_script(self) -> str:
        s = self.settings
        exports = {
            "TELEMETRY_DATA_DIR": s.data_dir,
            "TELEMETRY_PUBLISHED_URL": s.published_url,
            "TELEMETRY_PUBLIC_URL": s.public_url,
            "TELEMETRY_DATABASE_URL": s.database_url,
            "PATH": f"{Path(sys.executable).parent}:$PATH",
        }
        lines = ["# Sourced when you enter this worker: the pipeline's Python and stores."]
        for key, value in exports.items():
            quoted = shlex.quote(value) if key != "PATH" else f'"{value}"'
            lines.append(f"export {key}={quoted}")
        lines.append('PS1="(worker) $PS1"')
        return "\n".join(lines) + "\n"

    def launch(
        self,
        worker_id: int,
        name: str,
        owner: str,
        ssh_public_key: str,
        expires_at: dt.datetime | None = None,
    ) -> LaunchResult:
        workspace = self.root / f"{worker_id}-{name}"
        try:
            workspace.mkdir(parents=True, exist_ok=False)
            (workspace / "env.sh").write_text(self._env_script())
            (workspace / "authorized_keys").write_text(ssh_public_key + "\n")
            (workspace / "README.txt").write_text(
                f"Analysis workspace {name} for {owner}.\n"
                "It is deleted when the worker is killed or expires; publish what you want to keep.\n"
            )
        except OSError as exc:
            raise WorkerProviderError(f"cannot create the workspace {workspace}: {exc}") from exc
        command = f"cd {shlex.quote(str(workspace))} && bash --rcfile env.sh"
        log.info("worker %s: local workspace %s", worker_id, workspace)
        return LaunchResult(
            instance_id=str(workspace),
            address=str(workspace),
            connect_command=command,
            running=True,
        )

    def terminate(self, instance_id: str) -> None:
        workspace = Path(instance_id)
        if workspace.parent != self.root:
            raise WorkerProviderError(f"{instance_id} is not a workspace under {self.root}")
        shutil.rmtree(workspace, ignore_errors=True)
