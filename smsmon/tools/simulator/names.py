"""The vocabulary of the synthetic population: sectors, sender names, regions, numbers, networks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sector:
    """A line of business: name suffixes, traffic mix and how common its senders are."""

    key: str
    suffixes: tuple[str, ...]
    mix: tuple[float, float, float]  # marketing, notification, verification
    weight: float


SECTORS = (
    Sector(
        "shop", ("商城", "优选", "严选", "好物", "特卖", "生鲜", "电器"), (0.5, 0.35, 0.15), 0.34
    ),
    Sector("bank", ("银行", "农商银行"), (0.1, 0.5, 0.4), 0.12),
    Sector("delivery", ("快递", "物流", "速运"), (0.05, 0.9, 0.05), 0.12),
    Sector("travel", ("旅行", "酒店", "航空", "出行"), (0.3, 0.5, 0.2), 0.12),
    Sector("food", ("外卖", "餐饮", "咖啡"), (0.35, 0.4, 0.25), 0.1),
    Sector("finance", ("保险", "证券", "消费金融"), (0.15, 0.55, 0.3), 0.08),
    Sector("service", ("影城", "大药房", "教育", "健身"), (0.3, 0.5, 0.2), 0.12),
)
NAME_PREFIXES = (
    "优品", "乐购", "惠选", "拾光", "万家", "百汇", "鲜丰", "悦享", "小鹿", "云集",
    "安信", "华信", "瑞丰", "恒通", "金禾", "顺达", "速达", "云途", "锦程", "畅游",
    "途悦", "易行", "蓝海", "美味", "青禾", "嘉和", "盛世", "天润", "星河", "康宁",
    "初心", "明途", "东方", "南山", "北辰", "西湖", "长江", "泰和", "福瑞", "新禾",
)  # fmt: skip
MAX_ENTERPRISES = len(NAME_PREFIXES) * 7
"""The most enterprises a configuration may ask for: the name vocabulary runs short beyond."""

PLATFORM_NAMES = ("云讯通", "信达云", "快信平台", "速码云", "通达短信", "智信云")
UNREGISTERED_SIGNATURES = (
    "某某商城", "某某优选", "好运来商贸", "鑫鑫贷款", "速借金融", "名表特卖", "红包福利",
)  # fmt: skip
REGIONS = (
    "110000", "110105", "310000", "310115", "330100", "330106", "440300", "440106",
    "320500", "510100", "420100", "610100", "500000", "120000", "370200",
)  # fmt: skip
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
MSISDN_PREFIXES = (
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "147", "150",
    "151", "152", "153", "155", "156", "157", "158", "159", "166", "172", "173", "175",
    "176", "177", "178", "180", "181", "182", "183", "184", "185", "186", "187", "188",
    "189", "191", "193", "195", "198", "199",
)  # fmt: skip
GATEWAYS = ("gw-bj-1", "gw-sh-1", "gw-sh-2", "gw-gz-1")
IP_BLOCKS = ("203.0.113", "198.51.100", "192.0.2")  # documentation ranges: synthetic
SUBLET_IP_BLOCK = "198.18"  # benchmarking range: addresses no registered account uses
