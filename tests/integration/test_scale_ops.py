"""Issue 15: the operator surface with more sites than fit one 64 KiB frame.

With 1,231 sites `nircctl status`, `watch` and `map` exited 3 ("reply to
status exceeds the frame limit") and blamed the controller. Here 1,531
sites are configured (the 31 provinces and 1,500 generated ones, no
agents): status answers with all of them, as a table and as JSON, and
/status.json and /metrics carry them too."""
import json
import os
import urllib.request

import nirclib as T

N_GEN = 1500


def test_status_of_1531_sites():
    http = f"127.0.0.1:{T.free_port()}"
    env = T.Env("scale-ops", extra_nircd=f"[http]\nlisten = {http}")
    scen = os.path.join(env.dir, "generated.json")
    T.write_sites_scenario(scen, N_GEN, "gen")
    T.run([T.binary("nircd"), "-c", env.nircd_conf, "import-sites", scen], check=True, timeout=120)
    env.start_controller()
    r = env.ctl("--json", "status")
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    sites = json.loads(r.stdout)["sites"]
    assert len(sites) == 31 + N_GEN, len(sites)
    assert len(r.stdout) > 64 * 1024, "the reply really is larger than one 64 KiB frame"
    assert {"hubei", "gen-00001", f"gen-{N_GEN:05d}"} <= {s["slug"] for s in sites}
    r = env.ctl("status")
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    assert f"gen-{N_GEN:05d}" in r.stdout and "hubei" in r.stdout
    st = T.wait_until(lambda: (lambda j: j if len(j.get("sites", [])) == 31 + N_GEN else None)(
        T.status_json(http)), 15, "/status.json with every site")
    assert st["role"] == "leader"
    text = urllib.request.urlopen(f"http://{http}/metrics", timeout=5).read().decode()
    assert 'nirc_site_link{site="gen-01500"} 0' in text
    env.close()


if __name__ == "__main__":
    T.main([test_status_of_1531_sites])
