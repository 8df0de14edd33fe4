"""Stamp cards (集点卡), visit packages (计次卡) and gift cards (礼品卡)."""
