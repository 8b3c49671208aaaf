"""The command line: `appliance COMMAND`, one module a command, each styling what the engine
returns; `unattended` runs a job from the kernel command line."""

from appliance.cli.main import main

__all__ = ["main"]
