"""``colibri agents``, ``submit-task``, ``tasks``, ``task``, ``register-lane``: the hive, via the daemon."""

from typing import Annotated

import typer

from colibri.cli import context, output, params
from colibri.domain import FINISHED_TASK_STATES, TaskState
from colibri.errors import TASK_FAILED_EXIT

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON (see README, 'JSON output').")]
TenantOption = Annotated[str | None, typer.Option("--tenant", help="Only this tenant.", show_default=False)]
BRIEF_KEYS = ("id", "capability", "tenant", "state", "waiting")
TASK_KEYS = (
    "id", "tenant", "capability", "state", "attempts", "max_attempts", "agent", "waiting", "payload",
    "result", "error", "exit_status", "submitted_by", "created_at", "claimed_at", "finished_at", "host", "fence",
)  # fmt: skip


def agents(
    ctx: typer.Context,
    tenant: TenantOption = None,
    state: Annotated[str | None, typer.Option(help="active, stale, lost or left.", show_default=False)] = None,
    as_tree: Annotated[
        bool, typer.Option("--tree", help="Parents and their children (agents that spawned agents), with their agents.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List the agents the daemon knows, with their liveness."""
    if as_tree:
        from colibri.cli import children

        nodes = children.tree(context.get(ctx), tenant)
        if as_json:
            output.emit_json(nodes)
        else:
            children.tree_lines(nodes)
        return
    found = context.get(ctx).daemon_client().agents(tenant, state)
    if as_json:
        output.emit_json(found)
        return
    output.table(
        ("AGENT", "STATE", "HOST", "CAPABILITIES", "MOTHER", "LAST SEEN"),
        (
            (a["key"], a["state"], a.get("host") or "-", ",".join(c["name"] for c in a["capabilities"]),
             a["mother_version"], a["last_seen_at"])
            for a in found
        ),
    )  # fmt: skip


def submit_task(
    ctx: typer.Context,
    capability: Annotated[str, typer.Argument(help="The capability that must run it, e.g. echo.")],
    payload: Annotated[str, typer.Option("--payload", help="The task's input, a JSON document.")],
    tenant: Annotated[
        str | None,
        typer.Option(help="The tenant it is for (its agents or lanes run it); none: lanes only.", show_default=False),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it has finished and show the result.")] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Submitting again with the same key returns the first task instead of a new one "
            "(default: a fresh key, reused when the daemon's answer is lost and the call is retried).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Queue a task for a capability; it is routed to a live agent that offers it."""
    document = params.json_document("--payload", payload)
    client = context.get(ctx).daemon_client()
    task = client.submit(capability, document, tenant, idempotency_key)
    if not wait:
        output.show(task, as_json, keys=BRIEF_KEYS)
        return
    while task["state"] not in FINISHED_TASK_STATES:
        task = client.task(task["id"], wait=25)
    output.show(task, as_json, keys=TASK_KEYS)
    if task["state"] == TaskState.FAILED:
        raise typer.Exit(TASK_FAILED_EXIT)


def tasks(
    ctx: typer.Context,
    tenant: TenantOption = None,
    state: Annotated[str | None, typer.Option(help="queued, running, succeeded or failed.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1, max=1000)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List tasks, newest first."""
    found = context.get(ctx).daemon_client().tasks(tenant, state, limit)
    if as_json:
        output.emit_json(found)
        return
    output.table(
        ("ID", "TENANT", "CAPABILITY", "STATE", "ATTEMPTS", "AGENT", "UPDATED"),
        (
            (t["id"], t["tenant"], t["capability"], t["state"], t["attempts"], t["agent"], t["updated_at"])
            for t in found
        ),
    )


def task(
    ctx: typer.Context,
    task_id: Annotated[int, typer.Argument(help="The task's id.", min=1, max=2**63 - 1)],
    as_json: JsonFlag = False,
) -> None:
    """Show one task: state, attempts, the agent holding it, its result or error, why it waits."""
    output.show(context.get(ctx).daemon_client().task(task_id), as_json, keys=TASK_KEYS)


def register_lane(
    ctx: typer.Context,
    lane: Annotated[str, typer.Argument(help="The lane's name (its socket is run_dir/lanes/LANE/agent.sock).")],
    as_json: JsonFlag = False,
) -> None:
    """Declare a shared lane: agents on its socket may take any tenant's tasks."""
    result = context.get(ctx).daemon_client().declare_lane(lane)
    if as_json:
        output.emit_json(result)
    else:
        output.line(f"lane {lane}: {result['socket']}")


def register(app: typer.Typer) -> None:
    app.command("agents")(agents)
    app.command("submit-task")(submit_task)
    app.command("tasks")(tasks)
    app.command("task")(task)
    app.command("register-lane")(register_lane)
    from colibri.cli import children

    children.register(app)
