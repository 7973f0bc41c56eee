"""Commerce: pinned products, flash sales with atomic reservations in Redis, purchase events.

The public face is `Commerce` (one per node); it announces room events through the kernel's
`RoomBroadcast` port and never imports chat.
"""

from commerce.config import CommerceSettings
from commerce.errors import CommerceError
from commerce.service import Commerce

__all__ = ["Commerce", "CommerceError", "CommerceSettings"]
