"""Unit tests for marketing_sector: consumer finance, retail or other, from the text alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsmon.rules.content.sector import marketing_sector

pytestmark = pytest.mark.unit

# Invented senders and texts written for these tests (not from the corpus or training/eval).
FINANCE = [
    "【金禾贷】您的信用良好，最高可借6万元，最快2分钟到账，点击 u.jhd.cn/a1",
    "【梧桐银行】尊敬的客户，您可申请账单分期，手续费低至5折，回复FQ办理",
    "【明川理财】新客专享90天产品年化5.8%，1000元起投",
    "【安禾保险】百万医疗险每月仅需8元，带病可投，立即投保",
    "【梧桐银行】刷本行信用卡周五美食享5折，每月限2次",  # a bank's card promotion
    "【橙意商城】验证码 1234。您的专属借款额度3万元待领取，秒批",  # a shop lending money
    "Ｅ贷通：提额至５万，日息低至万２",  # full-width forms
]
RETAIL = [
    "【橙意商城】年货节每满300减50，爆款零食第二件半价，速抢 u.cy.cn/b",
    "【邻里鲜超市】本周六会员日，鸡蛋特价，到店再送环保袋",
    "【小鹿外卖】您有3张红包已到账，点餐立减8元，今日有效",
    "【衣橱集】新品上市，全场包邮，进店领券",
    "Flash sale: 50% off all sneakers this weekend, shop now",
]
OTHER = [
    "【远途通信】加10元得20GB流量，回复LL办理",
    "【青云旅行】三亚往返机票599元起，酒店低至5折",
    "【知行网校】寒假班火热招生，试听课免费",
    "【星幕影城】周二电影票19.9元",
    "【跃立健身】年卡立减500元，再送私教课",
    "【瀚海汽车】到店试驾送好礼，购车节限时优惠",
]


@pytest.mark.parametrize("text", FINANCE)
def test_consumer_finance_is_finance(text: str) -> None:
    assert marketing_sector(text) == "finance"


@pytest.mark.parametrize("text", RETAIL)
def test_goods_and_shops_are_retail(text: str) -> None:
    assert marketing_sector(text) == "retail"


@pytest.mark.parametrize("text", OTHER)
def test_services_are_other(text: str) -> None:
    assert marketing_sector(text) == "other"


def test_no_sector_term_is_other() -> None:
    assert marketing_sector("") == "other"
    assert marketing_sector("【某某】你好") == "other"


def test_instalment_goods_promotion_counts_as_finance() -> None:
    """A shop promotion that sells credit (12期免息) is reported as consumer finance."""
    assert marketing_sector("【橙意商城】手机家电12期免息，下单立减100元") == "finance"


def test_the_code_part_of_a_hybrid_does_not_decide() -> None:
    promo = "本周会员日全场满200减30，到店再领好礼"
    assert marketing_sector(promo) == "retail"
    assert marketing_sector("【邻里鲜超市】验证码 2231，5分钟内有效。" + promo) == "retail"


@given(st.text(max_size=200))
def test_always_one_of_three_sectors(text: str) -> None:
    assert marketing_sector(text) in ("retail", "finance", "other")
