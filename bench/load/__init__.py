"""The load and chaos benchmark of issue 7: Parley's production-like stack beside the relay baseline.

    python -m bench.load --scenario steady|ramp|large|storm|chaos|degraded|all --report docs/benchmarks/

The cluster is started from ``Procfile.stack`` and ``stack.env`` (bench/load/stack.py), with the
benchmark's own database (``parley_bench7``, dropped and migrated at the start), every
``PARLEY_RATE_*`` limit lifted and a private ``PROMETHEUS_MULTIPROC_DIR``. Each process is
controlled by its Procfile name (the chaos scenario SIGKILLs ``gateway1``, restarts
``redis2`` and kills ``worker``). The clients (bench/load/clients.py) run in this process, a
separate one from the servers: lean asyncio devices that speak the reference client's
protocol, each given the two gateways' URLs in turn (as the reference client's URL list; ``--via
balancer`` sends them through the stack's balancer instead). Each scenario then runs the Channels-tutorial relay
(bench/relay, two daphne processes) through the same load. Reports: docs/benchmarks/.

Definitions: a *delivery* is a message frame reaching one member device, the sender's own
device included (a message to a group of 10 makes 10 deliveries, so 5,000 deliveries/s are
500 stored messages/s); *latency* (send-to-deliver) is measured only on the other members'
devices, from the sender's ``time.time()`` when it first sent (carried in the body) to the
recipient parsing the frame, both in this process. *Missing after drain*: deliveries not yet
arrived when the phase's drain ended; *lost*: what the per-device check at the end of the
scenario (against the database's ``last_seq``) found missing.
"""
