"""Example scheduled job: `summary_job/` is the code, `build` packs it into a tarball."""
