"""A stand-in for a language model: each reply is the next of a few fixed lines, streamed a few
words at a time as a model streams tokens. It lets the example (and the plugin's tests) run with
no model reachable; a real agent passes its own LLM (or a realtime model) instead."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Never

from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
    llm,
    utils,
)

DEFAULT_LINES = (
    "Hello! I am a Facecast avatar, made from a single photo, speaking for a LiveKit agent.",
    "Everything you hear comes from the agent; the avatar moves its lips to match it.",
)


class ScriptedLLM(llm.LLM[Never]):  # no events of its own
    def __init__(self, lines: Sequence[str] = DEFAULT_LINES, *, words_per_chunk: int = 3) -> None:
        super().__init__()
        if not lines:
            raise ValueError("a script needs at least one line")
        self._lines = itertools.cycle(lines)
        self._words_per_chunk = words_per_chunk

    @property
    def model(self) -> str:
        return "scripted"

    @property
    def provider(self) -> str:
        return "facecast-example"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _ScriptedStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            text=next(self._lines),
            words_per_chunk=self._words_per_chunk,
        )


class _ScriptedStream(llm.LLMStream):
    def __init__(
        self,
        scripted: ScriptedLLM,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
        text: str,
        words_per_chunk: int,
    ) -> None:
        super().__init__(scripted, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._text = text
        self._words_per_chunk = words_per_chunk

    async def _run(self) -> None:
        request_id = utils.shortuuid("scripted_")
        words = self._text.split(" ")
        for start in range(0, len(words), self._words_per_chunk):
            piece = " ".join(words[start : start + self._words_per_chunk])
            content = piece if start == 0 else " " + piece
            self._event_ch.send_nowait(
                llm.ChatChunk(
                    id=request_id, delta=llm.ChoiceDelta(role="assistant", content=content)
                )
            )
