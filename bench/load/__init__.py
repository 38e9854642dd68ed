"""Parley's benchmark harness: the production-like stack, many lean clients, the relay baseline.

    python -m bench.load --scenario steady|ramp|large|storm|chaos|degraded|all --report docs/benchmarks/
    python -m bench.load --scenario gateway          # issue 3: the gateway's latency and sustained rate
    python -m bench.load --scenario large-channel    # issue 4: one channel of 1,000 members
    python -m bench.load.write_path | .fanout_shapes | .send_profile   # no stack: see each module

The cluster is started from ``Procfile.stack`` and ``stack.env`` (bench/load/stack.py, the one
process runner), with the benchmark's own database (``--database``, default ``parley_bench7``,
dropped and migrated at the start), every ``PARLEY_RATE_*`` limit lifted and a private
``PROMETHEUS_MULTIPROC_DIR``. Each process is controlled by its Procfile name (the chaos
scenario SIGKILLs ``gateway1``, restarts ``redis2`` and kills ``worker``; the gateway and
large-channel scenarios run only the processes they measure). The clients
(bench/load/clients.py, relayclients.py) run in this process, a separate one from the
servers: lean asyncio devices that speak the reference client's protocol, each given the
gateways' URLs in turn (as the reference client's URL list; ``--via balancer`` sends them
through the stack's balancer instead). Each scenario also runs the Channels-tutorial relay
(bench/relay, daphne) through the same load. Reports: ``--report DIR``.

Definitions (bench/load/recorder.py): a *delivery* is a message frame reaching one member
device. In the issue-7 scenarios the sender's own device counts (a message to a group of 10
makes 10 deliveries, so 5,000 deliveries/s are 500 stored messages/s); in ``gateway`` and
``large-channel`` it does not (9 per message to 10), as issues 3 and 4 defined them.
*Latency* (send-to-deliver) is measured only on the other members' devices, from the
sender's ``time.time()`` when it first sent (carried in the body) to the recipient parsing
the frame, both in this process. *Missing after drain*: deliveries not yet arrived when the
phase's drain ended; *lost*: what the per-device check at the end of the scenario (against
the database's ``last_seq``) found missing.
"""
