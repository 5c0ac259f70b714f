"""Secrets are masked in error records and NodeFailed messages, never in the cause."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import nanostream
from nanostream._core.redact import redact, remember_secret
from nanostream.testing import Collect


class CallApi(nanostream.NanoNode):
    def process_item(self, item: Any) -> Iterator[Any]:
        raise ConnectionError(f"GET https://user:pa55word@api.example/items?token=abc{item} failed")
        yield item  # pragma: no cover - makes it a generator


def test_error_records_mask_secrets(runner: str) -> None:
    api = CallApi(on_error="skip")
    dead = Collect()
    nanostream.from_iterable([1]) > api
    api.errors > dead
    api.global_start(runner=runner)
    (record,) = dead.items
    assert "pa55word" not in record.message and "abc1" not in record.message
    assert "pa55word" not in record.traceback and "abc1" not in record.traceback
    assert "https://user:***@api.example/items?token=***" in record.message


def test_node_failed_masks_its_message_and_keeps_the_cause(runner: str) -> None:
    sink = nanostream.from_iterable([1]) > CallApi(name="api")
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start(runner=runner)
    assert "pa55word" not in str(info.value) and "node 'api' failed" in str(info.value)
    assert "pa55word" in str(info.value.__cause__)  # the original, for debugging


def test_remembered_secrets_are_masked_anywhere() -> None:
    remember_secret("plain-looking-s3cret")
    assert redact("value plain-looking-s3cret here") == "value *** here"
    assert redact("nothing to hide") == "nothing to hide"
