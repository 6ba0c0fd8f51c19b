"""Which of vLLM's "<Module>: Failed to load weights" reload warnings a weight sync lets through (no vLLM needed)."""

import logging

import pytest

from medzero_pl.rollout.vllm import _ExpectedReloadWarningsFiltered

LOGGER = logging.getLogger(_ExpectedReloadWarningsFiltered.LOGGER)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def records():
    """What reaches the reload logger, whatever level vLLM's logger has (importing TRL sets VLLM_LOGGING_LEVEL=ERROR,
    which `quiet_vllm_logs` then applies)."""
    handler = Records()
    LOGGER.addHandler(handler)
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    yield handler
    LOGGER.setLevel(level)
    LOGGER.removeHandler(handler)


def warn(module: str) -> None:
    LOGGER.warning("%s: Failed to load weights", module)


def test_rotary_embeddings_and_a_tied_head_are_silent_during_a_reload(records):
    with _ExpectedReloadWarningsFiltered(tied_head=True):
        warn("RotaryEmbedding")
        warn("Llama3RotaryEmbedding")
        warn("ParallelLMHead")
    assert records.messages == []


def test_a_module_that_should_have_received_weights_still_warns(records):
    with _ExpectedReloadWarningsFiltered(tied_head=False):
        warn("ParallelLMHead")  # an untied head owns a checkpoint tensor: missing it is a real problem
        warn("QKVParallelLinear")
        LOGGER.warning("something else about RotaryEmbedding")
    assert records.messages == [
        "ParallelLMHead: Failed to load weights",
        "QKVParallelLinear: Failed to load weights",
        "something else about RotaryEmbedding",
    ]


def test_the_filter_is_gone_after_the_reload(records):
    with _ExpectedReloadWarningsFiltered(tied_head=True):
        pass
    warn("RotaryEmbedding")
    assert records.messages == ["RotaryEmbedding: Failed to load weights"]
