"""LIST then WATCH one kind of custom resource in a namespace, on a background thread, handing
each LIST and each event to its owner (an index). After an error it lists again, with
back-off; an expired resourceVersion (410) only means "list again". Nothing here keeps state
beyond the resourceVersion to resume from."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from avatar_crds.meta import GROUP, VERSION

log = structlog.get_logger("api_shim.informer")

WATCH_SECONDS = 240  # the API server ends each watch after this; it resumes where it was
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # after an error, the n-th time in a row

# (items, when the LIST started): the new truth. The monotonic start time lets an index tell
# what it did itself before the LIST from what came after.
OnList = Callable[[Iterable[dict[str, Any]], float], None]
OnEvent = Callable[[str, dict[str, Any]], None]  # ADDED, MODIFIED or DELETED; the raw object


class Informer:
    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        plural: str,
        *,
        label_selector: str | None,
        request_timeout: float,
        on_list: OnList,
        on_event: OnEvent,
        on_lost: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_lost` is called when the view stops being current (an error), until the next
        `on_list`."""
        self.namespace = namespace
        self.plural = plural
        self._api_client = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._label_selector = label_selector
        self._request_timeout = request_timeout
        self._on_list = on_list
        self._on_event = on_event
        self._on_lost = on_lost
        self._clock = clock
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread once; cheap to call again."""
        with self._lock:
            if self._thread is not None or self._stopped.is_set():
                return
            thread = self._thread = threading.Thread(
                target=self._run, name=f"{self.plural}-informer-{self.namespace}", daemon=True
            )
        thread.start()

    def stop(self) -> None:
        self._stopped.set()
        current = self._watch
        if current is not None:
            current.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._api_client.close()

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                version = self._relist()
                failures = 0
                while not self._stopped.is_set():
                    version = self._watch_from(version)
            except Exception as error:
                self._on_lost()
                if self._stopped.is_set():
                    return
                status = error.status if isinstance(error, ApiException) else None
                if status != 410:  # an expired version only means: list again
                    retry_in = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                    log.warning(
                        "informer_unavailable",
                        plural=self.plural,
                        error_type=type(error).__name__,
                        status=status,
                        retry_in=retry_in,
                    )
                    self._stopped.wait(retry_in)
                    failures += 1

    def _relist(self) -> str:
        started = self._clock()
        raw = self._custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            self.plural,
            label_selector=self._label_selector,
            _request_timeout=self._request_timeout,
        )
        if not isinstance(raw, dict):
            raise TypeError(f"expected a JSON object from the API server, got {type(raw)}")
        self._on_list(raw.get("items", []), started)
        return str(raw["metadata"]["resourceVersion"])

    def _watch_from(self, version: str) -> str:
        """Hand on events until the API server ends the watch; the version to resume from."""
        stream = watch.Watch()
        self._watch = stream
        try:
            for event in stream.stream(
                self._custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                self.plural,
                label_selector=self._label_selector,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                _request_timeout=WATCH_SECONDS + self._request_timeout,
            ):
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):  # not BOOKMARK
                    self._on_event(event["type"], event["raw_object"])
                if self._stopped.is_set():
                    break
        finally:
            self._watch = None
        return str(stream.resource_version or version)
