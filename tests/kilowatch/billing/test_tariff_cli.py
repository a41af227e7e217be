"""``kilowatch tariff`` and ``kilowatch savings`` through the real executable."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.kilowatch.billing.test_savings import metered_site
from tests.kilowatch.telemetry.test_energy import make_site

DATA = Path(__file__).parent.parent / "data"


def run(kw_env, *args):
    """Run the ``kilowatch`` executable against this module's services."""
    return subprocess.run(["kilowatch", *args], env={**os.environ, **kw_env},
                          capture_output=True, text=True, timeout=120)


def company_name(conn, company_id):
    return conn.execute("SELECT name FROM companies WHERE id = %s", (company_id,)).fetchone()[
        "name"]


def one_line_error(result, text):
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert text in result.stderr, result.stderr


def test_import_list_show_and_faulty_files(kw_env, conn, tmp_path):
    company, _, _ = make_site(conn)
    name = company_name(conn, company)
    imported = run(kw_env, "tariff", "import", str(DATA / "urdb_sunridge.json"),
                   "--company", name)
    assert imported.returncode == 0, imported.stderr
    assert "GS-TOU-2 General Service Time-of-Use with Demand" in imported.stdout
    assert "4 energy period(s), 3 demand period(s), flat demand" in imported.stdout
    residential = run(kw_env, "tariff", "import", str(DATA / "urdb_sunridge.json"), "--company",
                      name, "--label", "67a1c0ffee5a1b2c3d4e5f61", "--name", "Home")
    assert residential.returncode == 0 and "net metering" in residential.stdout
    listed = run(kw_env, "tariff", "list", "--company", name)
    assert "Home" in listed.stdout and "GS-TOU-2" in listed.stdout
    shown = json.loads(run(kw_env, "tariff", "show", "Home").stdout)
    assert shown["export"]["compensation"] == "net_metering"

    one_line_error(run(kw_env, "tariff", "import", str(DATA / "urdb_sunridge.json"),
                       "--company", name), "already has a tariff named")
    document = json.loads((DATA / "urdb_sunridge.json").read_text())
    document["items"][0]["flatdemandmonths"] = [0] * 11
    faulty = tmp_path / "faulty.json"
    faulty.write_text(json.dumps(document))
    one_line_error(run(kw_env, "tariff", "import", str(faulty), "--company", name),
                   "Error: flatdemandmonths: expected 12 entries, got 11")
    broken = tmp_path / "broken.json"
    broken.write_text('{"items": [')
    one_line_error(run(kw_env, "tariff", "import", str(broken), "--company", name),
                   "not valid JSON")
    one_line_error(run(kw_env, "tariff", "import", str(tmp_path / "absent.json"), "--company",
                       name), "absent.json")


def test_assign_and_show_savings(kw_env, conn, tmp_path):
    company, site = metered_site(conn)
    name = company_name(conn, company)
    site_ref = str(site)
    flat = {"name": "Flat CLI", "currency": "EUR",
            "energy": {"periods": [{"tiers": [{"rate": 0.2}]}],
                       "weekday": [[0] * 24] * 12, "weekend": [[0] * 24] * 12},
            "flat_demand": {"periods": [{"tiers": [{"rate": 10}]}], "months": [0] * 12},
            "fixed_charge": {"amount": 10, "per": "month"}}
    path = tmp_path / "flat.json"
    path.write_text(json.dumps(flat))
    assert run(kw_env, "tariff", "import", str(path), "--company", name).returncode == 0
    one_line_error(run(kw_env, "savings", "show", "--site", site_ref, "--month", "2026-09"),
                   "has no tariff in 2026-09")
    one_line_error(run(kw_env, "tariff", "assign", "--site", site_ref, "--tariff", "Flat CLI",
                       "--from", "1 Sept"), "--from: '1 Sept' is not a date")
    assigned = run(kw_env, "tariff", "assign", "--site", site_ref, "--tariff", "Flat CLI",
                   "--from", "2026-09-01")
    assert assigned.returncode == 0, assigned.stderr
    assert "from 2026-09-01" in assigned.stdout

    # September is over: a final bill, with only six hours of data, flagged incomplete.
    shown = run(kw_env, "savings", "show", "--site", site_ref, "--month", "2026-09", "--json")
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert [summary["bills"][s]["total"] for s in ("without_system", "pv_only", "actual")] == [
        144.40, 99.60, 77.20]
    assert summary["savings"]["system"]["total"] == 67.20 and summary["final"] is True
    assert summary["bills"]["actual"]["quality"]["missing_intervals"] == 2880 - 24
    table = run(kw_env, "savings", "show", "--site", site_ref, "--month", "2026-09")
    assert "storage saves (2-3)" in table.stdout and "22.40" in table.stdout
    assert "2856 of 2880 intervals missing" in table.stdout
    assert "peak demand: without system 12.0 kW" in table.stdout
    listed = run(kw_env, "savings", "list", "--site", site_ref)
    assert "2026-09" in listed.stdout and "saves 67.20" in listed.stdout
    one_line_error(run(kw_env, "savings", "show", "--site", site_ref, "--month", "2026-13"),
                   "not a month like")
    history = run(kw_env, "tariff", "history", "--site", site_ref)
    assert "Flat CLI" in history.stdout and "current" in history.stdout


def test_worker_job_stores_the_bills_of_assigned_sites(kw_env, conn):
    # The worker's `savings` job computes every month from the assignment to now
    # (September with data, October and November without) without being asked.
    company, site = metered_site(conn)
    name = company_name(conn, company)
    assert run(kw_env, "tariff", "import", str(DATA / "urdb_sunridge.json"), "--company",
               name, "--name", "GS").returncode == 0
    assert run(kw_env, "tariff", "assign", "--site", str(site), "--tariff", "GS", "--from",
               "2026-09-01").returncode == 0
    worker = run(kw_env, "worker", "--once", "--job", "savings")
    assert worker.returncode == 0, worker.stderr
    rows = conn.execute(
        "SELECT period_start, count(*) AS n, bool_and(stale) AS stale FROM bills "
        "WHERE site_id = %s GROUP BY 1 ORDER BY 1", (site,)).fetchall()
    assert rows[0]["period_start"].isoformat() == "2026-09-01" and len(rows) >= 3
    assert all(r["n"] == 3 and not r["stale"] for r in rows)
    september = conn.execute(
        "SELECT total FROM bills WHERE site_id = %s AND period_start = '2026-09-01' "
        "AND scenario = 'actual'", (site,)).fetchone()
    # 36 kWh off-peak summer (0.0966) = 3.48; flat summer demand 6 kW × 5.90 = 35.40;
    # fixed 42.50. Total 81.38.
    assert float(september["total"]) == 81.38
