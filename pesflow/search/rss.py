"""Random structure search (RSS) and the DFT-only RSS baseline."""

from __future__ import annotations

from dataclasses import dataclass

from pesflow.search.base import Engine, EngineSettings, register
from pesflow.search.tasks import OracleTask, Result, SurrogateRelaxResult, Task


@dataclass
class RSSSettings(EngineSettings):
    """RSS: random structures relaxed in the surrogate (≤ ``steps``), then the oracle.

    ``n_parallel`` candidates are on the go at once (1: strictly one after another).
    """

    steps: int = 500
    n_parallel: int = 1


@register
class RandomSearch(Engine):
    """Random structure search with a surrogate relaxation before each oracle call."""

    name = "rss"
    settings_class = RSSSettings
    settings: RSSSettings

    def _propose(self) -> list[Task]:
        n_new = self.settings.n_parallel - len(self._in_flight) - len(self._outbox)
        return [self._relax_task(self._random(), self.settings.steps) for _ in range(n_new)]

    def _on_result(self, task: Task, result: Result) -> None:
        if isinstance(result, SurrogateRelaxResult) and result.error is None:
            self._outbox.append(self._oracle_task(result.atoms))


@dataclass
class OracleRSSSettings(EngineSettings):
    """DFT-only baseline: random structures relaxed by the oracle itself (≤ ``steps``)."""

    steps: int = 500
    n_parallel: int = 1


@register
class OracleRandomSearch(Engine):
    """The historical baseline: no surrogate, every relaxation step is an oracle call."""

    name = "oracle_rss"
    settings_class = OracleRSSSettings
    settings: OracleRSSSettings
    uses_surrogate = False

    def _propose(self) -> list[Task]:
        n_new = self.settings.n_parallel - len(self._in_flight) - len(self._outbox)
        return [
            self._oracle_task(self._random(), steps=self.settings.steps, keep="last")
            for _ in range(n_new)
        ]

    def _on_result(self, task: Task, result: Result) -> None:
        assert isinstance(task, OracleTask)
