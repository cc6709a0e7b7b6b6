"""The agent and task state machines (colibri/domain.py): the edges the hive may take, in one place."""

import pytest

from colibri.domain import (
    FINISHED_TASK_STATES,
    AgentState,
    TaskState,
    agent_may_become,
    check_task_transition,
    requeue_outcome,
)
from colibri.errors import StateConflict
from colibri.services.hive.rules import AGENT_STATES, FINISHED, TASK_STATES


def test_the_api_names_are_the_enums_in_their_documented_order() -> None:
    assert AGENT_STATES == ("active", "stale", "lost", "left")
    assert TASK_STATES == ("queued", "running", "succeeded", "failed")
    assert FINISHED == {"succeeded", "failed"} == FINISHED_TASK_STATES


@pytest.mark.parametrize(
    ("current", "new"),
    [("queued", TaskState.RUNNING), ("running", TaskState.SUCCEEDED), ("running", TaskState.FAILED),
     ("running", TaskState.QUEUED)],
)  # fmt: skip
def test_a_task_takes_the_edges_of_its_lifecycle(current: str, new: TaskState) -> None:
    check_task_transition(1, current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [("queued", TaskState.SUCCEEDED), ("queued", TaskState.QUEUED), ("succeeded", TaskState.RUNNING),
     ("failed", TaskState.QUEUED), ("succeeded", TaskState.FAILED)],
)  # fmt: skip
def test_a_finished_task_never_runs_again_and_a_queued_one_is_not_finished_unclaimed(
    current: str, new: TaskState
) -> None:
    with pytest.raises(StateConflict, match=f"task 7 is {current}; it cannot become {new}"):
        check_task_transition(7, current, new)


def test_a_requeued_task_fails_once_its_attempts_are_spent() -> None:
    assert requeue_outcome(1, 3) == TaskState.QUEUED
    assert requeue_outcome(3, 3) == TaskState.FAILED


def test_a_lost_or_gone_agent_comes_back_only_by_registering() -> None:
    assert agent_may_become(AgentState.ACTIVE, AgentState.STALE)
    assert agent_may_become(AgentState.STALE, AgentState.LOST)
    assert agent_may_become(AgentState.LOST, AgentState.ACTIVE) and agent_may_become(AgentState.LEFT, AgentState.ACTIVE)
    assert not agent_may_become(AgentState.LOST, AgentState.STALE)
    assert not agent_may_become(AgentState.LEFT, AgentState.LOST)
