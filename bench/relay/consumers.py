"""The tutorial's chat consumer (channels docs, "Tutorial Part 3"), kept as it is there."""
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer


class RelayConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.room_group_name = f"chat_{self.scope['url_route']['kwargs']['room']}"
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code):
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data):
        message = json.loads(text_data)["message"]
        await self.channel_layer.group_send(self.room_group_name, {"type": "chat.message", "message": message})

    async def chat_message(self, event):
        await self.send(text_data=json.dumps({"message": event["message"]}))


class PersistingRelayConsumer(RelayConsumer):
    """The same relay, storing each message (one INSERT) before it relays it."""

    async def receive(self, text_data):
        message = json.loads(text_data)["message"]
        await database_sync_to_async(_store)(self.room_group_name, message)
        await self.channel_layer.group_send(self.room_group_name, {"type": "chat.message", "message": message})


def _store(room: str, body: str) -> None:
    from .models import RelayMessage

    RelayMessage.objects.create(room=room, body=body)
