"""The README's demo command brings up PostgreSQL, the controller and the
31 simulated provinces, shows them all online, and stops everything it
started."""
import os
import subprocess

import nirclib as T


def test_demo_shows_31_sites_online_and_cleans_up():
    env = os.environ.copy()
    env["NIRC_DEMO_PORT"] = str(T.free_port())
    env["NIRC_DEMO_PG_PORT"] = str(int(T.PG_PORT) + 3)
    env["NIRC_BUILD_DIR"] = T.BUILD
    run_dir = os.path.join(T.RUN, "demo")
    env["NIRC_DEMO_RUN"] = run_dir
    r = subprocess.run([os.path.join(T.SRC, "demo.sh"), "--duration", "0"], env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"demo failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "31 sites: 31 online, 0 stale" in r.stdout, r.stdout
    rows = [l for l in r.stdout.splitlines() if " online " in l and l.split()[0].islower()]
    assert len(rows) == 31, f"expected 31 site rows online, got {len(rows)}"
    # Everything it started is gone: no process still uses the demo's files.
    left = subprocess.run(["pgrep", "-f", run_dir + "/"],
                          capture_output=True, text=True).stdout.split()
    assert left == [], f"demo left processes running: {left}"
    pg_dir = f"/tmp/nirc-demo-pg-{os.getuid()}-{env['NIRC_DEMO_PG_PORT']}"
    st = subprocess.run([os.path.join(T.SRC, "deploy", "pg-private.sh"), "status", pg_dir],
                        capture_output=True)
    assert st.returncode != 0, "the demo's PostgreSQL is still running"


if __name__ == "__main__":
    T.main([test_demo_shows_31_sites_online_and_cleans_up])
