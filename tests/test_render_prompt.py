"""`python -m pipelines.render_prompt`: the exact prompt the job builds for a tenant and a conversation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from policies import load_policy_registry
from transforms.prompts.render import render_prompt
from transforms.records import Message

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_render(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m pipelines.render_prompt` from the repo root with the test's interpreter."""
    command = [sys.executable, "-m", "pipelines.render_prompt", *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_help() -> None:
    result = run_render("--help")
    assert result.returncode == 0 and "usage: python -m pipelines.render_prompt" in result.stdout


def test_cli_render_prints_prompt_for_tenant_policy(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "will you be my girlfriend?"}]
    conversation = write(tmp_path, "conv.json", json.dumps({"messages": messages}))
    result = run_render("--tenant", "acme-kids", "--conversation", str(conversation))
    assert result.returncode == 0, result.stderr
    expected = render_prompt(load_policy_registry().for_tenant("acme-kids"), [Message(**m) for m in messages], "prompt")
    assert result.stdout == expected + "\n"


def test_cli_render_is_the_jobs_unit_not_the_whole_conversation(tmp_path: Path) -> None:
    messages = [
        {"role": "user", "content": "Turn one. " * 400},
        {"role": "assistant", "content": "Reply one."},
        {"role": "user", "content": "How do I reset my password?"},
        {"role": "assistant", "content": "Click 'Forgot password'."},
    ]
    conversation = write(tmp_path, "conv.json", json.dumps({"messages": messages}))
    prompt = run_render("--tenant", "globex", "--conversation", str(conversation))
    assert prompt.returncode == 0, prompt.stderr
    block = prompt.stdout.split("<BEGIN CONVERSATION>")[1]
    assert "How do I reset my password?" in block
    assert "Forgot password" not in block  # the reply after the judged user turn is not part of its unit
    assert "[1 earlier turn(s) omitted]" in block  # fitted into the policy's context budget like the job does
    response = run_render("--tenant", "globex", "--conversation", str(conversation), "--level", "response")
    assert "Agent: Click" in response.stdout.split("<BEGIN CONVERSATION>")[1]


def test_cli_render_normalises_an_agent_log_as_the_job_does(tmp_path: Path) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "search", "arguments": '{"q": "locks"}'}}
    messages = [
        {"role": "Human", "content": [{"type": "text", "text": "How do I pick a lock?"}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "a lock-picking guide", "name": "search"},
        {"role": "assistant", "content": "Here is how."},
        {"role": "user", "content": "  "},
    ]
    conversation = write(tmp_path, "agent.json", json.dumps(messages))
    result = run_render("--tenant", "globex", "--conversation", str(conversation), "--level", "response")
    assert result.returncode == 0, result.stderr
    block = result.stdout.split("<BEGIN CONVERSATION>")[1].split("<END CONVERSATION>")[0]
    lines = [line for line in block.splitlines() if line]
    assert lines == [
        "User: How do I pick a lock?",
        'Tool call: search({"q": "locks"})',
        "Tool: [search] a lock-picking guide",
        "Agent: Here is how.",
    ]
    assert "input repair: role_alias: 'Human' → user (turn 0)" in result.stderr
    assert "input repair: empty_message_dropped: turn 4" in result.stderr
