"""``patron analytics fit``: JSON on the CDNOW file, and errors that name the option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patron.cli import app
from tests.analytics.cdnow import write_cdnow_csv

runner = CliRunner()


@pytest.fixture(scope="module")
def cdnow_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cdnow_csv(tmp_path_factory.mktemp("cdnow") / "cdnow.csv")


def test_fit_prints_one_json_object_with_the_published_cdnow_estimates(cdnow_csv: Path) -> None:
    result = runner.invoke(app, ["analytics", "fit", "--data", str(cdnow_csv),
                                 "--calibration-end", "1997-09-30", "--unit", "weeks", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert "warning" not in result.stderr
    assert set(out) == {"bgnbd", "gamma_gamma", "customers"}
    assert out["customers"] == 2357
    bg, gg = out["bgnbd"], out["gamma_gamma"]
    assert set(bg) == {"r", "alpha", "a", "b", "loglik"} and set(gg) == {"p", "q", "v"}
    assert (bg["r"], bg["alpha"], bg["a"], bg["b"]) == pytest.approx(
        (0.243, 4.414, 0.793, 2.426), abs=5e-4)
    assert bg["loglik"] == pytest.approx(-9582.4, abs=0.05)
    assert (gg["p"], gg["q"], gg["v"]) == pytest.approx((6.25, 3.74, 15.44), abs=5e-3)


def test_days_scale_alpha_by_seven_and_leave_the_shape_alone(cdnow_csv: Path) -> None:
    result = runner.invoke(app, ["analytics", "fit", "--data", str(cdnow_csv),
                                 "--calibration-end", "1997-09-30", "--unit", "days", "--json"])
    bg = json.loads(result.stdout)["bgnbd"]
    assert bg["alpha"] == pytest.approx(7 * 4.4136, rel=1e-3)
    assert (bg["r"], bg["a"], bg["b"]) == pytest.approx((0.2426, 0.7929, 2.4259), rel=1e-3)


def test_fit_without_json_prints_a_table(cdnow_csv: Path) -> None:
    result = runner.invoke(app, ["analytics", "fit", "--data", str(cdnow_csv),
                                 "--calibration-end", "1997-09-30"], terminal_width=160)
    assert result.exit_code == 0, result.output
    assert "2,357 customers" in result.output and "alpha" in result.output


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tx.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("args", "option", "words"), [
    (["--unit", "months"], "--unit", "months"),
    (["--calibration-end", "30/09/1997"], "--calibration-end", "30/09/1997"),
    (["--calibration-end", "1990-01-01"], "--calibration-end", "no transactions"),
])
def test_bad_options_exit_2_naming_the_option(cdnow_csv: Path, args: list[str], option: str,
                                              words: str) -> None:
    result = runner.invoke(app, ["analytics", "fit", "--data", str(cdnow_csv), *args],
                           terminal_width=200)
    assert result.exit_code == 2
    assert option in result.output and words in result.output


@pytest.mark.parametrize(("text", "words"), [
    ("customer,day,amount\na,2024-01-01,1\n", "missing column(s) date"),
    ("customer,date,amount\na,2024-01-01,1\na,2024-13-45,1\n", "row 2: cannot read"),
    ("customer,date,amount\na,2024-01-01,x\n", "column 'amount'"),
    ("customer,date,amount\na,2024-01-01,1\nb,2024-01-02,1\n", "repeat purchase"),
])
def test_bad_data_exits_2_naming_data_and_the_column(tmp_path: Path, text: str,
                                                     words: str) -> None:
    result = runner.invoke(app, ["analytics", "fit", "--data", _csv(tmp_path, text), "--json"],
                           terminal_width=200)
    assert result.exit_code == 2
    assert "--data" in result.output and words in result.output


def test_a_header_without_rows_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["analytics", "fit", "--data",
                                 _csv(tmp_path, "customer,date,amount\n")])
    assert result.exit_code == 2
    assert "no rows" in result.output


def test_too_little_data_still_prints_json_but_warns_on_stderr(tmp_path: Path) -> None:
    text = ("customer,date,amount\na,2024-01-01 10:00,5\na,2024-01-01 12:00,5\n"
            "a,2024-01-03 09:00,7\nb,2024-01-02 10:00,3\nb,2024-01-09 18:30,4\n"
            "c,2024-01-05 08:00,2\n")
    result = runner.invoke(app, ["analytics", "fit", "--data", _csv(tmp_path, text), "--json",
                                 "--unit", "days"], terminal_width=200)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["customers"] == 3
    assert "edge of the search range" in result.stderr


def test_missing_data_file_exits_2() -> None:
    result = runner.invoke(app, ["analytics", "fit", "--data", "/nonexistent/tx.csv"])
    assert result.exit_code == 2
    assert "--data" in result.output
