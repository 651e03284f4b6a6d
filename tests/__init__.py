"""The test suite, a package so its helpers import as tests.functions.streams etc. (pytest and bench/)."""
