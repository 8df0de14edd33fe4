"""Coupons and referrals: templates, issued coupons, redemption, referral rewards."""
