"""The ``siamface`` console script: thin shells over :mod:`siamface.service`."""
