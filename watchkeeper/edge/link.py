"""An edge's link to its core: HTTP(S) with the edge's credential, retried with
exponential backoff (tenacity) while the core cannot be reached or answers 5xx.

A core that answers with a refusal is not retried: 401 means the credential was
revoked (the edge stops and says so), 410 that an alert's entry may no longer be
searched (the core did not store it, by design), other 4xx that what was sent can
never be accepted (kept in the edge's audit chain, then dropped).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from watchkeeper.errors import EdgeRefused

log = logging.getLogger(__name__)

Answer = TypeVar("Answer")


class CoreUnreachable(Exception):
    """The core did not answer, or answered 5xx: worth trying again later."""


class CoreLink:
    def __init__(
        self, core_url: str, credential: str | None, timeout_s: float, retry_max_s: float,
        stopping: threading.Event,
    ) -> None:  # fmt: skip
        self.core_url = core_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry_max_s = retry_max_s
        self.stopping = stopping
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        self.client = httpx.Client(base_url=self.core_url, headers=headers, timeout=timeout_s)
        self.reachable: bool | None = None
        """Whether the last request got an answer (None before the first)."""
        self.last_error: str | None = None

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, timeout_s: float | None = None,
                **options: Any) -> httpx.Response:  # fmt: skip
        """One request; CoreUnreachable when there is no answer or a 5xx one, EdgeRefused
        for a 4xx other than 410."""
        try:
            response = self.client.request(
                method, path, timeout=timeout_s or self.timeout_s, **options
            )
        except httpx.HTTPError as exc:
            self.reachable = False
            self.last_error = (
                f"cannot reach the core at {self.core_url}: {exc or type(exc).__name__}"
            )
            raise CoreUnreachable(self.last_error) from exc
        if response.status_code >= 500:
            self.reachable = False
            self.last_error = f"the core answered {response.status_code}: {_detail(response)}"
            raise CoreUnreachable(self.last_error)
        self.reachable = True
        self.last_error = None
        if response.status_code >= 400 and response.status_code != 410:
            raise EdgeRefused(_detail(response), response.status_code)
        return response

    def persist(
        self, attempt: Callable[[], Answer], lost: Callable[[CoreUnreachable], None]
    ) -> tuple[Answer, int]:
        """``attempt`` until it gets an answer, waiting 1, 2, 4, ... seconds (at most
        ``retry_max_s``) between tries; the answer and how many tries failed. ``lost``
        hears of the first failure. While the edge stops, CoreUnreachable ends it."""

        def first_failure(state: RetryCallState) -> None:
            if state.attempt_number == 1 and state.outcome is not None:
                error = state.outcome.exception()
                assert isinstance(error, CoreUnreachable)
                lost(error)

        retrying = Retrying(
            retry=retry_if_exception_type(CoreUnreachable),
            wait=wait_exponential(min=min(1.0, self.retry_max_s), max=self.retry_max_s),
            stop=lambda _state: self.stopping.is_set(),
            sleep=self.stopping.wait,
            before_sleep=first_failure,
            reraise=True,
        )
        answer = retrying(attempt)
        return answer, retrying.statistics["attempt_number"] - 1


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail or response.text[:200] or response.reason_phrase)
