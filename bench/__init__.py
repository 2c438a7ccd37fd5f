"""The benchmark driver behind ``make bench``: spreadedge measured against PostgreSQL baselines.

Everything runs in one throw-away cluster (``bench.scratch``) so baselines and spreadedge numbers
come from the same server, settings and moment; ``python -m bench --help`` lists the options.
"""
