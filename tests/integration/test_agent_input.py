"""Issue 4 bad input at the agent: directives naming an unknown target,
shares not summing to 1000, another site's directive, a reused version,
and a corrupt state file; and a controller of a stale epoch, left at its
Welcome. Each is rejected with detail, logged, and leaves the previous
routing in place. The controller here is
nirc-probe in serve mode: an independent fake that sends what NIRC's own
controller never would."""
import json
import os
import subprocess

import nirclib as T

env = None
SITE = "xizang"
REFUSED = 10  # ErrorCode ERROR_CODE_REFUSED (proto/nirc.proto)


def state():
    path = os.path.join(env.dir, f"state-{SITE}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["route_state"]


def send(epoch, directive):
    """Starts a fake controller, lets the agent connect, returns its ack."""
    port = T.free_port()
    probe = subprocess.Popen(
        [T.binary("nirc-probe"), "--listen", f"127.0.0.1:{port}", "--ca", f"{T.PKI}/ca.crt",
         "--cert", f"{T.PKI}/controller-nircd.crt", "--key", f"{T.PKI}/controller-nircd.key",
         "serve", str(epoch), json.dumps(directive)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(probe.stdout.readline()) == {"listening": True}
        agent = env.start_agent(SITE, controllers=f"127.0.0.1:{port}")
        out = probe.stdout.readline()
        probe.wait(timeout=20)
        agent.stop()
        return json.loads(out), agent
    finally:
        if probe.poll() is None:
            probe.kill()


def route(*pairs):
    return [{"site": s, "permille": p} for s, p in pairs]


def test_valid_directive_applied_and_saved():
    global env
    env = T.Env("agent-input")
    ack, _ = send(5, {"version": 1, "route": route(("shaanxi", 1000))})
    assert ack["result"] == "applied", ack
    assert state()["route"] == route(("shaanxi", 1000)) and state()["epoch"] == 5


def refused(epoch, directive, expect, words):
    before = state()
    ack, agent = send(epoch, directive)
    assert ack["result"] == expect, ack
    for w in words:
        assert w in ack["detail"], (w, ack)
    assert state() == before, "the previous routing must stay in place"
    assert ack["detail"] in open(agent.log_path).read(), "the refusal must be logged"


def test_unknown_target_rejected():
    refused(5, {"version": 2, "route": route(("atlantis", 1000))}, "rejected", ["atlantis"])


def test_shares_not_summing_to_1000_rejected():
    refused(5, {"version": 3, "route": route((SITE, 700), ("shaanxi", 200))}, "rejected",
            ["900"])


def test_directive_for_another_site_rejected():
    refused(5, {"version": 4, "site": "hubei", "route": route(("shaanxi", 1000))}, "rejected",
            ["hubei"])


def test_stale_epoch_refused_at_the_welcome():
    # A controller of an older epoch than the agent has seen (5) is a
    # deposed leader: the agent leaves at its Welcome, before any directive
    # (it would refuse that too, "stale epoch": test_agent_directive.c).
    before = state()
    out, agent = send(3, {"version": 9, "route": route((SITE, 1000))})
    assert out["error_code"] == REFUSED, out
    assert "leads epoch 3, older than epoch 5 this agent has seen" in out["error_message"], out
    assert state() == before, "the previous routing must stay in place"
    assert out["error_message"] in open(agent.log_path).read(), "the refusal must be logged"


def test_reused_version_with_another_route_rejected():
    refused(5, {"version": 1, "route": route((SITE, 1000))}, "rejected", ["reused"])


def test_resend_of_the_applied_directive_is_idempotent():
    ack, _ = send(5, {"version": 1, "route": route(("shaanxi", 1000))})
    assert ack["result"] == "applied" and "already applied" in ack["detail"], ack


def test_corrupt_state_file_starts_home_and_keeps_the_evidence():
    path = os.path.join(env.dir, f"state-{SITE}.json")
    with open(path, "w") as f:
        f.write('{"format": 1, "site": "xizang", "route_state": {"epoch": 5, "ver')
    ack, agent = send(6, {"version": 1, "route": route(("henan", 1000))})
    log = open(agent.log_path).read()
    assert "is corrupt" in log and "routing home" in log, log[-2000:]
    assert os.path.exists(path + ".corrupt")
    # It still takes a good directive afterwards, and saves it.
    assert ack["result"] == "applied", ack
    assert state()["route"] == route(("henan", 1000))


if __name__ == "__main__":
    T.main([test_valid_directive_applied_and_saved, test_unknown_target_rejected,
            test_shares_not_summing_to_1000_rejected, test_directive_for_another_site_rejected,
            test_stale_epoch_refused_at_the_welcome, test_reused_version_with_another_route_rejected,
            test_resend_of_the_applied_directive_is_idempotent,
            test_corrupt_state_file_starts_home_and_keeps_the_evidence])
