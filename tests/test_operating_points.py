"""The thresholds' calibration population is balanced by source (thresholds.by_source, tested in test_calibrate.py,
says what each threshold gives each source)."""


def test_threshold_population_is_balanced_by_source(shared):
    from edgeface.eval.faces import threshold_calibration_population

    pop = threshold_calibration_population(1200)
    counts = {s: sum(1 for i in pop.identities if i.startswith(s + ":")) for s in ("celeba", "lfw", "aaf")}
    assert counts["lfw"] == counts["aaf"] == 400 and 300 <= counts["celeba"] <= 400, counts
    assert "balanced by source" in pop.description
