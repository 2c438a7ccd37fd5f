"""Delivery of the notification outbox (``monitor.notifications``): channels and the worker.

SQL decides what is notified, when a failed message is tried again and when it is dead; this
package only claims due messages, sends them (SMTP email, Slack, Discord, signed webhook) and
reports each result back in the claiming transaction.
"""

from spreadedge.notify.channels import Channel, DeliveryError, Message, configured_channels
from spreadedge.notify.worker import Worker

__all__ = ["Channel", "DeliveryError", "Message", "Worker", "configured_channels"]
