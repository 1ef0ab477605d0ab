"""One module per assignment, each defining ``SPEC`` (an ``hpsearch.spec.StudySpec``)."""
