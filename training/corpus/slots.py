"""Slots of the corpus templates: invented sender names, value generators, the Family type."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

# --------------------------------------------------------------------------- slots
# Every sender name below is invented for this corpus; none is a real brand.
BRANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ec": ("ecommerce", ("优品汇", "惠买网", "拼好物", "喜购商城", "乐淘优选", "好物集市")),
    "food": ("food_delivery", ("速达外卖", "饭点到家", "快食送", "美味速递")),
    "retail": ("retail", ("星辰超市", "惠邻便利", "衣尚坊", "美妆集", "佳家购物广场")),
    "resto": ("food_delivery", ("蜀香小馆", "老街火锅", "禾风茶饮")),
    "fin": ("finance", ("安心借", "易贷通", "恒信理财", "钱袋宝")),
    "bank": ("banking", ("华信银行", "汇通银行", "民丰银行", "东海农商银行")),
    "ins": ("insurance", ("安泰保险", "康宁人寿", "平顺财险")),
    "travel": ("travel", ("途悦旅行", "畅游网", "云程出行")),
    "air": ("travel", ("蓝天航空", "云程航空")),
    "rail": ("travel", ("铁路出行", "城际铁路")),
    "hotel": ("travel", ("悦居酒店", "栖云酒店", "如归连锁酒店")),
    "ride": ("travel", ("快车出行", "顺风约车")),
    "logi": ("logistics", ("速运快递", "顺达物流", "闪电快递", "邻里驿站")),
    "tel": ("telecom", ("畅联移动", "星网通信", "华通电信")),
    "edu": ("education", ("学而优教育", "启航网校")),
    "school": ("education", ("第一实验小学", "阳光幼儿园", "育才中学")),
    "estate": ("real_estate", ("锦绣华府", "滨江壹号院")),
    "auto": ("automotive", ("驰骋汽车", "远航汽车4S店")),
    "health": ("healthcare", ("仁和医院", "康健体检中心", "市第一人民医院")),
    "app": ("entertainment", ("乐玩游戏", "趣看短视频", "悠米社区")),
    "video": ("entertainment", ("追剧视频", "乐影视频")),
    "cinema": ("entertainment", ("星光影城", "银幕国际影城")),
    "comm": ("retail", ("邻里优选", "社区鲜团")),
    "hr": ("recruitment", ("才聚招聘", "云程科技人力资源部")),
    # Consumer-finance senders of the second corpus part (families_finance.py).
    "cfin": ("finance", ("融易花", "乐享借", "禾苗分期", "信和钱包", "快来贷")),
    "wealth": ("finance", ("金橡树财富", "安盈基金", "盈满理财")),
    "bank2": ("banking", ("锦川银行", "沧澜银行", "白鹭农商银行")),
    "ins2": ("insurance", ("安和人寿", "稳行财险")),
    "mall": ("ecommerce", ("百货云集", "优选工坊", "好价仓")),
    "fresh": ("retail", ("果然鲜超市", "每日菜篮", "邻家便利")),
    "courier2": ("logistics", ("疾风快递", "万里速运", "社区驿站")),
}
CITY_SENDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "gov_hrss": ("government", ("人社局", "社保中心")),
    "gov_police": ("government", ("反诈中心", "公安局")),
    "gov_traffic": ("government", ("交警支队", "交警")),
    "gov_tax": ("government", ("税务局", "税务")),
    "gov_weather": ("government", ("气象台", "气象局")),
    "gov_cdc": ("government", ("疾控中心", "卫健委")),
    "gov_service": ("government", ("政务服务", "12345热线")),
    "util": ("utilities", ("燃气", "水务集团", "供电公司")),
}
# Brand slots that a verification code may come from ({any}).
ANY_SENDER = ("ec", "food", "fin", "bank", "travel", "tel", "app", "video", "health", "ride", "ins")
CITIES = ("杭州", "成都", "南京", "武汉", "西安", "长沙", "郑州", "青岛", "苏州", "合肥", "厦门")
PRODUCTS = {
    "ec": (
        "蓝牙耳机",
        "空气炸锅",
        "羽绒服",
        "运动鞋",
        "扫地机器人",
        "保温杯",
        "纯棉四件套",
        "洗衣凝珠",
        "零食大礼包",
        "行李箱",
        "护肤套装",
        "电动牙刷",
    ),
    "food": ("麻辣香锅", "黄焖鸡米饭", "轻食沙拉", "奶茶", "炸鸡汉堡", "小龙虾", "牛肉面"),
    "retail": ("鲜牛奶", "车厘子", "洗发水", "大米", "食用油", "连衣裙", "口红", "面膜"),
    "comm": ("沃柑", "土鸡蛋", "五常大米", "猕猴桃", "草莓", "鲜虾"),
}
EN_PRODUCTS = ("sneakers", "headphones", "skincare sets", "winter coats", "coffee makers")
GIFTS = ("精美保温杯", "环保购物袋", "电影票", "定制帆布包", "10元话费", "品牌雨伞", "新年台历")
EVENTS = ("618", "双11", "双12", "年货节", "周年庆", "会员日", "开学季", "国庆", "女神节", "年中")
ANCHORS = ("小美", "阿杰", "甜甜", "老王")
CARS = ("驰骋X5", "远航SUV", "星途轿跑", "新能源小巴")
COURSES = ("Python入门直播课", "初中数学提高班", "雅思口语精讲", "财务报表分析课")
MOVIES = ("星河彼岸", "长夜将明", "山海之约", "追风少年")
PACKAGES = ("5G畅享套餐", "流量加油包", "视频彩铃业务", "来电提醒业务", "千兆宽带")
KEYWORDS = ("KTLL", "BLDJ", "5G", "1", "8", "JY")
ROADS = ("人民路与解放路交叉口", "建设大道", "中山北路", "科技园南路", "滨江大道")
STORES = ("万达店", "中山路店", "高新区旗舰店", "大学城店")
STATIONS = ("邻里驿站(幸福小区店)", "小区东门快递柜", "学校南门代收点", "物业服务中心")
COURIERS = ("王师傅", "李师傅", "张师傅", "刘师傅")
ROOMS = ("高级大床房", "豪华双床房", "行政套房")
DOCTORS = ("张医生", "李主任", "王医生")
NAMES = ("尊敬的会员", "亲爱的用户", "您好", "尊敬的客户", "张先生", "李女士", "亲")
OPTOUTS = (
    "回T退订",
    "退订回T",
    "拒收请回复R",
    "回TD退订",
    "退订回N",
    "回复TD退订",
    "退订请回复T",
    "回N退订",
    "退订回复TD",
    "回0退订",
    "回复“TD”退订",
    "退订回Ｔ",
    "回T退",
)
URL_HOSTS = ("yph", "hmw", "phw", "xgsc", "ltyx", "hwjs", "sdwm", "fdjd", "txlv", "clyd")


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _alnum(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def _url(rng: random.Random) -> str:
    host = rng.choice(URL_HOSTS)
    style = rng.randrange(5)
    if style == 0:
        return f"t.cn/{_alnum(rng, 7)}"
    if style == 1:
        return f"https://m.{host}.com/{_alnum(rng, 6)}"
    if style == 2:
        return f"dwz.cn/{_alnum(rng, 6)}"
    if style == 3:
        return f"{host}.cn/{_alnum(rng, 5)}"
    return f"http://s.{host}.top/a/{_alnum(rng, 6)}"


def _date(rng: random.Random) -> str:
    m, d = rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice((f"{m:02d}月{d:02d}日", f"{m}月{d}日", f"2024-{m:02d}-{d:02d}"))


def _time(rng: random.Random) -> str:
    return f"{rng.randint(7, 22):02d}:{rng.choice((0, 10, 15, 20, 30, 40, 45, 50)):02d}"


def _amount(rng: random.Random) -> str:
    v = rng.choice((rng.randint(19, 999), rng.randint(100, 9999)))
    return rng.choice((str(v), f"{v}.00", f"{v}.{_digits(rng, 2)}"))


def _pct(rng: random.Random) -> str:
    return rng.choice(("8折", "7.5折", "五折", "5折", "6.8折", "9折", "三折", "2折"))


SIMPLE: dict[str, Callable[[random.Random], str]] = {
    "url": _url,
    "date": _date,
    "date2": _date,
    "time": _time,
    "amt": _amount,
    "amt2": _amount,
    "amt_s": lambda r: str(r.choice((3, 5, 8, 10, 15, 20, 30, 50, 66, 88, 100))),
    "m1": lambda r: str(r.choice((39, 59, 99, 199, 299, 399))),
    "m2": lambda r: str(r.choice((5, 10, 20, 30, 50, 100))),
    "big": lambda r: str(r.choice((5000, 20000, 50000, 80000, 200000))),
    "pct": _pct,
    "code": lambda r: _digits(r, r.choice((4, 6, 6, 6))),
    "min": lambda r: str(r.choice((5, 10, 15, 30))),
    "tail": lambda r: _digits(r, 4),
    "order": lambda r: _digits(r, r.choice((12, 15, 18))),
    "order2": lambda r: r.choice(("SF", "YT", "ZT", "")) + _digits(r, 12),
    "n": lambda r: str(r.randint(2, 9)),
    "hours": lambda r: str(r.choice((24, 48, 72))),
    "points": lambda r: str(r.randint(100, 9000)),
    "points2": lambda r: str(r.randint(1000, 20000)),
    "rate": lambda r: r.choice(("2.35", "3.1", "3.85", "4.2", "2.8")),
    "year": lambda r: r.choice(("2023", "2024")),
    "month": lambda r: str(r.randint(1, 12)),
    "hotline": lambda r: r.choice(
        ("95" + _digits(r, 3), "400-" + _digits(r, 3) + "-" + _digits(r, 4))
    ),
    "phone": lambda r: "1" + r.choice("3578") + _digits(r, 1) + "****" + _digits(r, 4),
    "pickup": lambda r: f"{r.randint(1, 9)}-{r.randint(1, 6)}-{_digits(r, 4)}",
    "flight": lambda r: r.choice(("LT", "YC", "BS")) + _digits(r, 4),
    "train": lambda r: r.choice("GDK") + str(r.randint(10, 9999)),
    "seat": lambda r: f"{r.randint(1, 16):02d}车{r.randint(1, 20):02d}{r.choice('ABCDF')}座",
    "gate": lambda r: f"{r.choice('ABC')}{r.randint(1, 60)}",
    "plate": lambda r: r.choice("浙川苏鄂陕湘豫鲁皖闽") + r.choice("ABCDE") + _alnum(r, 5).upper(),
    "hall": lambda r: f"{r.randint(1, 9)}号厅{r.randint(1, 12)}排{r.randint(1, 20)}座",
    "city": lambda r: r.choice(CITIES),
    "city2": lambda r: r.choice(CITIES),
    "product": lambda r: r.choice(PRODUCTS["ec"] + PRODUCTS["retail"]),
    "food_item": lambda r: r.choice(PRODUCTS["food"]),
    "comm_item": lambda r: r.choice(PRODUCTS["comm"]),
    "gift": lambda r: r.choice(GIFTS),
    "en_product": lambda r: r.choice(EN_PRODUCTS),
    "event": lambda r: r.choice(EVENTS),
    "anchor": lambda r: r.choice(ANCHORS),
    "car": lambda r: r.choice(CARS),
    "course": lambda r: r.choice(COURSES),
    "movie": lambda r: r.choice(MOVIES),
    "pkg": lambda r: r.choice(PACKAGES),
    "kw": lambda r: r.choice(KEYWORDS),
    "road": lambda r: r.choice(ROADS),
    "station": lambda r: r.choice(STATIONS),
    "store": lambda r: r.choice(STORES),
    "courier": lambda r: r.choice(COURIERS),
    "room": lambda r: r.choice(ROOMS),
    "doctor": lambda r: r.choice(DOCTORS),
    "name": lambda r: r.choice(NAMES),
    "apr": lambda r: r.choice(("3.45", "3.6", "7.2", "8.8", "9.9", "10.8", "12")),
    "daily": lambda r: r.choice(("0.02%", "万2", "0.03%", "万1.5", "0.025%")),
    "term": lambda r: r.choice(("6", "12", "24", "36")),
    "mins": lambda r: r.choice(("1", "2", "3", "5", "10", "30")),
    "quota": lambda r: r.choice(("3000", "8000", "1万", "2万", "5万", "20万", "30000", "50000")),
}


@dataclass(frozen=True)
class Family:
    """One template family: a label, the category a sender would declare, and phrasings."""

    fid: str
    label: str
    declared: str
    templates: tuple[str, ...]
    optout_rate: float = 0.0
    # Marketing only: retail, finance or other; empty means "from the sender's domain".
    sector: str = ""


def mkt(
    fid: str,
    *templates: str,
    declared: str = "marketing",
    optout: float = 0.65,
    sector: str = "",
) -> Family:
    """A marketing family (declared marketing unless disguised)."""
    return Family(fid, "marketing", declared, templates, optout, sector)


def ntf(fid: str, *templates: str, optout: float = 0.0) -> Family:
    """A true notification family."""
    return Family(fid, "notification", "notification", templates, optout)


def ver(fid: str, *templates: str) -> Family:
    """A true verification-code family."""
    return Family(fid, "verification", "verification", templates)
