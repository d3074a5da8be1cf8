"""The stages of the pipeline, each a module with a ``run(...)`` that takes paths and a typed
config, returns the path it wrote and skips what that file already holds::

    features = extract.run(image_dir, names, out / "features.h5", config)
    pairs    = select_pairs.run(features, names, out / "pairs.json", strategy)
    matches  = match.run(image_dir, features, pairs, out / "matches.h5", scorer, config)
    database = to_database.run(image_dir, features, pairs, matches, out / "database.db")
    verify.run(database, verification)
    guided.run(image_dir, features, pairs, matches, database, out / "guided.json", scorer)  # opt-in
    sparse   = reconstruct.run(database, image_dir, out / "sparse", mapper)

:func:`patchmatch.sfm.run_sfm` is this chain; ``patchmatch match`` runs the match and verify
(and, opt-in, guided) stages on a user's COLMAP database (:mod:`patchmatch.database_matching`).
A stage given a ``report`` dict adds its counts to it (the keys of ``report.json``).
"""
