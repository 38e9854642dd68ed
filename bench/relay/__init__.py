"""The baseline of bench/load's scenarios: the Channels tutorial's chat relay, nothing more.

One consumer joins its socket's channel to the room's group and group_sends every frame it
receives to the room (the tutorial's ``ChatConsumer``): no auth, no sequence numbers, no
receipts, no replay. ``/ws/relay-persist/<room>/`` is the same relay inserting each message
with the ORM before the group_send, to price persistence on its own. Served by daphne:

    RELAY_LAYER=core|pubsub REDIS_URL=redis://... DATABASE_URL=postgres://... \\
        daphne -p 8100 bench.relay.asgi:application
"""
