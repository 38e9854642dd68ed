from django.db import models


class RelayMessage(models.Model):
    """What the persisting relay stores before relaying: the least a chat server writes."""

    room = models.CharField(max_length=100)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
