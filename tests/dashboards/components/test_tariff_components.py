"""The tariff editor's pure pieces: month × hour grids, painting, and forms ↔ tariff."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dashboards.components.billing import tariff_editor, tariff_forms, tariff_grid
from kilowatch.billing import tariffs, urdb
from kilowatch.billing.tariffs import TariffError
from tests.dashboards.savings_helpers import tou_structure

URDB = Path(__file__).resolve().parents[2] / "kilowatch" / "data" / "urdb_sunridge.json"


def _fields(structure: dict) -> tuple:
    """What the editor shows of a structure, as build_structure takes it back."""
    structure = copy.deepcopy(structure)
    return (tariff_forms.settings_of(structure), tariff_forms.energy_rows(structure),
            tariff_forms.demand_rows(structure, "demand"),
            tariff_forms.demand_rows(structure, "flat_demand"),
            [tariff_forms.flat_months_row(structure)], tariff_forms.schedules(structure))


@pytest.mark.parametrize("structure", [
    tou_structure(),
    urdb.import_urdb(json.loads(URDB.read_text())).to_dict(),
    tariff_forms.default_structure("CHF"),
], ids=["tou", "urdb-sunridge", "default"])
def test_editor_fields_give_back_the_same_tariff(structure):
    rebuilt = tariff_forms.build_structure(*_fields(structure))
    assert tariffs.parse(rebuilt) == tariffs.parse(structure)


def test_tiers_become_one_row_each_and_come_back_in_order():
    structure = urdb.import_urdb(json.loads(URDB.read_text())).to_dict()
    rows = tariff_forms.energy_rows(structure)
    tiered = [row for row in rows if row["period"] == 2]
    assert [(r["rate"], r["max_kwh"]) for r in tiered] == [(0.0966, 10000.0), (0.1079, None)]
    assert tiered[1]["tier_basis"] is None  # the basis is the period's, shown once


def test_typed_numbers_and_blank_rows_are_understood():
    settings, energy, demand, flat, months, grids = _fields(tou_structure())
    energy[0]["rate"] = " 0,15 "
    energy[1]["period"] = "1"
    energy.append({"period": "", "rate": None, "label": "left empty"})
    months[0]["jan"] = "0"
    rebuilt = tariff_forms.build_structure(settings, energy, demand, flat, months, grids)
    assert rebuilt["energy"]["periods"][0]["tiers"][0]["rate"] == 0.15
    assert len(rebuilt["energy"]["periods"]) == 2
    assert rebuilt["flat_demand"]["months"][0] == 0
    assert tariffs.parse(rebuilt) == tariffs.parse(tou_structure())


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e[0].update(rate="abc"), "energy.periods[0].tiers[0].rate: expected a number, "
                                        "got 'abc'"),
    (lambda e: e[1].update(period=3), "energy rates: period 1 has no rate"),
    (lambda e: e[1].update(period=1.5), "energy rates, row 2, period: expected a whole number"),
    (lambda e: e[0].update(tier_basis="weekly"), "energy.periods[0].tier_basis: expected one of"),
    (lambda e: e.append("row"), "energy rates, row 3: not a table row"),
])
def test_bad_rows_are_named(change, message):
    settings, energy, demand, flat, months, grids = _fields(tou_structure())
    change(energy)
    with pytest.raises(TariffError) as error:
        tariffs.parse(tariff_forms.build_structure(settings, energy, demand, flat, months,
                                                   grids))
    assert str(error.value).startswith(message)


def test_too_many_rows_are_refused():
    settings, _, demand, flat, months, grids = _fields(tou_structure())
    rows = [{"period": 0, "rate": 0.1}] * (tariff_forms.MAX_ROWS + 1)
    with pytest.raises(TariffError, match="^energy rates: expected a list of at most 200"):
        tariff_forms.build_structure(settings, rows, demand, flat, months, grids)


def test_period_labels_take_each_period_first_label():
    rows = [{"period": 1, "label": "Peak"}, {"period": 0, "label": None},
            {"period": 0, "label": "Off-peak"}, {"period": "x", "label": "ignored"}]
    assert tariff_forms.period_labels(rows) == {0: "Off-peak", 1: "Peak"}


def test_schedule_figure_shows_period_numbers_and_labels():
    table = tariff_grid.blank()
    table[6][17] = 1
    figure = tariff_grid.schedule_figure(table, {0: "Off-peak", 1: "Peak"}, "Energy · weekdays")
    heatmap, markers = figure.data
    assert heatmap.z[6][17] == 1 and heatmap.text[6][17] == "1"
    assert heatmap.zmin == -0.5 and heatmap.zmax == 1.5
    assert len(markers.x) == 288
    assert markers.customdata[6 * 24 + 17] == "Jul 17:00–18:00 · period 1 (Peak)"
    assert figure.layout.dragmode == "select"


def test_a_click_and_a_box_give_cells():
    assert tariff_grid.cells_from_click({"points": [{"x": 17, "y": 6}]}) == [(6, 17)]
    assert tariff_grid.cells_from_click({"points": [{"x": 24, "y": 6}]}) == []
    assert tariff_grid.cells_from_click({"points": []}) == []
    assert tariff_grid.cells_from_click("x") == []
    box = {"points": [{"curveNumber": 1, "x": 2, "y": 2}, {"curveNumber": 1, "x": 3, "y": 2},
                      {"curveNumber": 0, "x": 9, "y": 9}]}
    assert tariff_grid.cells_from_selection(box) == [(2, 2), (2, 3)]
    ranged = {"points": [], "range": {"x": [16.6, 18.2], "y": [0.7, 1.4]}}
    assert tariff_grid.cells_from_selection(ranged) == [(1, 17), (1, 18)]
    assert tariff_grid.cells_from_selection({"range": {"x": ["a"]}}) == []
    assert tariff_grid.cells_from_selection(None) == []


def test_blocks_wrap_across_the_year_and_midnight():
    cells = tariff_grid.block(11, 2, 22, 6)
    assert {m for m, _ in cells} == {10, 11, 0, 1}
    assert {h for _, h in cells} == {22, 23, 0, 1, 2, 3, 4, 5}
    assert len(tariff_grid.block(1, 12, 0, 24)) == 288
    assert len(tariff_grid.block(6, 6, 17, 21)) == 4


def test_paint_returns_a_new_table():
    table = tariff_grid.blank()
    painted = tariff_grid.paint(table, [(0, 0), (11, 23)], 2)
    assert painted[0][0] == 2 and painted[11][23] == 2
    assert table[0][0] == 0


def test_tariff_list_and_history_tables():
    listing = tariff_editor.tariff_list([{"id": 3, "name": "TOU", "currency": "EUR", "sites": 2,
                                          "structure": tou_structure()}])
    text = json.dumps(listing.to_plotly_json(), default=lambda o: o.to_plotly_json())
    assert "TOU" in text and "2 site(s)" in text and "2 energy period(s)" in text
    empty = tariff_editor.tariff_list([])
    assert empty.id == "tariffs-none"
    assert tariff_editor.history_table([]).id == "tariffs-history-empty"
