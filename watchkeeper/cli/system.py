"""`watchkeeper systemd-unit`: run the service at boot, restarted if it stops."""

from __future__ import annotations

import getpass
import shlex
import shutil
import sys
from typing import Annotated

import typer

from watchkeeper.cli.app import app
from watchkeeper.cli.invocation import PROGRAM, invocation

SYSTEMD_FOLDER = "/etc/systemd/system"
UNIT = """\
# Watchkeeper as a systemd service. Install with:
#   {install}
#   sudo systemctl daemon-reload && sudo systemctl enable --now watchkeeper
# Its log: journalctl -u watchkeeper -f
[Unit]
Description=Watchkeeper: watchlist-only face recognition
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
User={user}
WorkingDirectory={data_dir}
Environment=WATCHKEEPER_DATA_DIR={data_dir}
Environment=WATCHKEEPER_MODELS_DIR={models_dir}
Environment=WATCHKEEPER_KEY_FILE={key_file}
{config}ExecStart={command} serve
# Ctrl-C's signal: every camera stores its last alerts before the service ends.
KillSignal=SIGINT
TimeoutStopSec=90
Restart=on-failure
RestartSec=5
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
UMask=0077

[Install]
WantedBy=multi-user.target
"""


@app.command("systemd-unit")
def systemd_unit(
    ctx: typer.Context,
    user: Annotated[
        str | None,
        typer.Option(help="Account the service runs as (default: the one running this)."),
    ] = None,
) -> None:
    """Print a systemd unit that runs `watchkeeper serve` at boot with this installation,
    this data folder, key and configuration file, restarting it if it fails."""
    settings = ctx.obj.settings()
    config = ctx.obj.config_file
    command = invocation()
    if command == PROGRAM:  # systemd wants the full path
        command = shlex.quote(str(shutil.which(PROGRAM)))
    sys.stdout.write(
        UNIT.format(
            install=f"{invocation()} systemd-unit | sudo tee {SYSTEMD_FOLDER}/watchkeeper.service",
            user=user or getpass.getuser(),
            data_dir=settings.data_dir.resolve(),
            models_dir=settings.models_dir.resolve(),
            key_file=settings.key_file.resolve(),
            config=f"Environment=WATCHKEEPER_CONFIG={config.resolve()}\n" if config else "",
            command=command,
        )
    )
