"""``engine = "command"``: any server, started from a command line in which
``{port}``, ``{model}`` and ``{context}`` are filled in."""

from __future__ import annotations

import shlex

from agenteval.errors import BadInputError
from agenteval.serving.servers import ManagedServer


class CommandServer(ManagedServer):
    def argv(self) -> list[str]:
        if not self.cfg.command:
            raise BadInputError(f"model {self.alias!r}: engine 'command' needs 'command'")
        return shlex.split(self.cfg.command.format(port=self.port, model=str(self.model_path or ""),
                                                   context=self.cfg.context)) + self.cfg.args

    def describe(self) -> dict[str, object]:
        return {"server": "command"}
