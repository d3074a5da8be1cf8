"""Stage 6: incremental mapping of a verified database."""

from __future__ import annotations

from patchmatch import colmap
from patchmatch.stages import reconstruct


def test_the_model_registers_every_image_and_replaces_an_earlier_one(verified, chain, tmp_path):
    db, _ = verified
    sparse = tmp_path / "sparse"
    (sparse / "1").mkdir(parents=True)  # an earlier run's model is never left behind
    report: dict = {}
    model = reconstruct.run(db, chain["images"], sparse, colmap.MapperConfig(num_threads=2), report)
    assert model == sparse / "0" and not (sparse / "1").exists()
    assert colmap.read_reconstruction(model).num_reg_images() == 4 and report["mapping_attempts"][0]["kept"]
    assert report["rejected"] == [] and [(m["path"], m["registered"]) for m in report["models"]] == [("sparse/0", 4)]
    assert report["registered_in_models"] == 4 and report["mapper"] == "incremental"  # what auto chose


def test_no_verified_pair_gives_no_model(tmp_path):
    db = colmap.create_database(tmp_path / "empty.db")
    report: dict = {}
    model = reconstruct.run(db, tmp_path, tmp_path / "sparse", report=report)
    assert not model.exists() and report["mapping_attempts"] == [] and report["models"] == []
