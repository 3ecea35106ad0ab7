"""The bench's documents: bench/population.py's section keeps its markers, so that a rerun of
`python -m bench` keeps it, and parts measured on two machines are never shown together."""

from __future__ import annotations

from bench import population
from bench.__main__ import keep_sections

PART = {"started": "2026-12-02 08:00 UTC", "cores": 2, "command": "python -m bench.population",
        "rows": [{"k": 1, "model_epoch_wall": 0.5, "model_epoch_cpu": 0.9, "epoch_wall": 0.5,
                  "first_epoch_wall": 0.7, "load": [1.0, 1.0]}]}


def machine(key: str) -> dict:
    return {"key": key, "cpu": "AMD EPYC", "cpu_id": "AuthenticAMD/23/1/2", "cores": 2}


def test_parts_of_another_machine_are_dropped():
    doc = {"kscan": {**PART, "machine": machine("a")}, "seeds": {**PART, "machine": machine("b")},
           "sweep": dict(PART), "errors": {"sweep": {**PART, "machine": machine("b"), "error": "x"}}}
    kept = population.same_machine(doc, "a")
    assert set(kept) == {"kscan"}
    assert set(population.same_machine(doc, "b")) == {"seeds", "errors"}


def test_section_is_written_between_markers_and_survives_the_main_bench(tmp_path):
    perf = tmp_path / "performance.md"
    perf.write_text("# Performance\n\nold text\n\n<!-- population: begin (old) -->\n## Populations\nstale\n")
    doc = {"kscan": {**PART, "machine": machine("a")}}
    population.write_section(perf, population.render(doc))
    text = perf.read_text()
    assert "stale" not in text and "old text" in text
    assert text.count(population.BEGIN) == 1 and text.count(population.END) == 1
    assert "| 1 | 0.500 | 0.900 |" in text and "AMD EPYC (AuthenticAMD/23/1/2), 2 cores" in text
    population.write_section(perf, population.render({"kscan": {**PART, "machine": machine("a"),
                                                                "rows": []}}))
    assert perf.read_text().count(population.BEGIN) == 1 and "| 1 | 0.500" not in perf.read_text()
    # `python -m bench` rewrites the rest of the document and keeps this block as it was.
    kept = keep_sections(str(perf), "# Performance\n\nnew text\n")
    assert "new text" in kept and population.END in kept and "AMD EPYC (AuthenticAMD" in kept


def test_section_is_appended_where_there_is_none(tmp_path):
    perf = tmp_path / "performance.md"
    perf.write_text("# Performance\n")
    population.write_section(perf, population.render({"kscan": {**PART, "machine": machine("a")}}))
    assert perf.read_text().startswith("# Performance\n\n" + population.BEGIN)
