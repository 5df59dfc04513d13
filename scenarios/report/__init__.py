"""Reproducible bug reports: ``kha report collect|show|check`` packs what a topology and a run left behind
into one tarball (secrets redacted), and ``kha replay`` boots the same topology again and re-runs the
recorded fault schedule to say whether the outcome reproduces."""
