"""The demo chain's catalogue: about 200 products in 12 categories, prices in fen.

Consumables carry a replenishment cycle (how long a typical purchase lasts), which the
purchase simulation uses to bring customers back for the same product at roughly that
rhythm; a product's own cycle overrides its category's (a 1 kg bag of coffee lasts longer
than 250 g). Durable goods (kitchenware, gift boxes) have none. Seasonal gift boxes
(mooncakes, zongzi, New Year hampers) only sell in their season.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import insert
from sqlalchemy.orm import Session

from patron.catalog.models import Category, Product
from patron.demo.ids import unix_ms, uuid7_batch


@dataclass(frozen=True)
class ProductSpec:
    name: str
    price_minor: int
    replenish_days: int | None = None  # overrides the category's cycle
    season: str | None = None  # sells only on that festival's days


@dataclass(frozen=True)
class CategorySpec:
    code: str
    name: str
    sku_prefix: str
    replenish_days: int | None
    walk_in_weight: float  # share of walk-in basket lines
    products: tuple[ProductSpec, ...]


P = ProductSpec


def _formula() -> tuple[ProductSpec, ...]:
    brands = (("贝源", 0), ("澳优选", 3000), ("启赋星", 6000), ("纯牧有机", 11000))
    stages = (("1段", 1800), ("2段", 900), ("3段", 0), ("4段 儿童成长奶粉", -2500))
    items = [P(f"{brand}婴幼儿配方奶粉 {stage} 800g", 25800 + extra + delta)
             for brand, extra in brands for stage, delta in stages]
    items += [P("贝源婴幼儿配方奶粉 3段 400g 便携装", 14800, 11),
              P("纯牧有机婴幼儿配方奶粉 2段 400g 便携装", 19800, 11),
              P("贝源婴幼儿配方奶粉 3段 800g×6罐 箱装", 148800, 126)]
    return tuple(items)


def _diapers() -> tuple[ProductSpec, ...]:
    items = [P(f"{brand}纸尿裤 {size} {count}片", price)
             for brand, base in (("柔芯", 0), ("云朵轻薄", 2000))
             for size, count, price in (("NB", 84, 9900 + base), ("S", 76, 10900 + base),
                                        ("M", 62, 11900 + base), ("L", 54, 12900 + base),
                                        ("XL", 46, 12900 + base), ("XXL", 40, 13900 + base))]
    items += [P(f"柔芯拉拉裤 {size} {count}片", price)
              for size, count, price in (("L", 46, 12900), ("XL", 40, 13900),
                                         ("XXL", 34, 14900))]
    return tuple(items)


def _coffee() -> tuple[ProductSpec, ...]:
    beans = (("埃塞俄比亚 耶加雪菲 浅烘", 9800), ("哥伦比亚 慧兰 中烘", 8800),
             ("云南保山 小粒咖啡 中烘", 6800), ("巴西 喜拉多 中深烘", 7200),
             ("危地马拉 安提瓜 中烘", 9200), ("肯尼亚 AA 浅烘", 11800),
             ("印尼 曼特宁 深烘", 8800), ("意式拼配 深烘", 6800), ("秘鲁 有机 中烘", 8200),
             ("巴拿马 瑰夏 浅烘", 22800))
    items = [P(f"{name} 咖啡豆 250g", price) for name, price in beans]
    items += [P("意式拼配 深烘 咖啡豆 1kg", 19800, 90), P("家常拼配 中烘 咖啡豆 1kg", 16800, 90),
              P("挂耳咖啡 耶加雪菲 10片", 4900, 10), P("挂耳咖啡 经典拼配 10片", 3900, 10),
              P("挂耳咖啡 曼特宁 10片", 4500, 10), P("冷萃咖啡液 25ml×12", 5900, 12),
              P("速溶黑咖啡 2g×30条", 3900, 30)]
    return tuple(items)


def _tea() -> tuple[ProductSpec, ...]:
    return (P("明前西湖龙井 250g", 58800, 60), P("雨前西湖龙井 250g", 29800),
            P("洞庭碧螺春 250g", 26800), P("安溪铁观音 清香型 250g", 16800),
            P("武夷山大红袍 250g", 23800), P("云南普洱熟茶饼 357g", 19800, 90),
            P("福鼎白牡丹 200g", 15800), P("福鼎寿眉 饼 300g", 12800, 90),
            P("正山小种红茶 250g", 13800), P("福州茉莉花茶 250g", 8800),
            P("云南滇红 250g", 9800), P("黄山毛峰 250g", 14800), P("六安瓜片 250g", 17800),
            P("凤凰单丛 蜜兰香 250g", 19800), P("杭白菊 100g", 3800, 30),
            P("大麦茶 300g", 2200, 30))


def _pets() -> tuple[ProductSpec, ...]:
    return (P("全价成猫粮 1.5kg", 8900, 30), P("全价成猫粮 4kg", 19800, 75),
            P("全价幼猫粮 1.5kg", 9900, 30), P("无谷鸡肉猫粮 2kg", 15800, 40),
            P("全价成犬粮 2kg", 7900, 20), P("全价成犬粮 10kg", 32800, 90),
            P("小型犬幼犬粮 2kg", 9800, 25), P("主食猫罐头 85g×12", 6900, 14),
            P("猫咪冻干 鸡胸肉 200g", 7800, 30), P("猫条 15g×20", 3900, 20),
            P("膨润土猫砂 10L", 3900, 21), P("豆腐猫砂 6L×3", 8900, 30),
            P("犬用洁齿骨 20支", 4900, 30), P("宠物湿巾 80抽", 1900, 30),
            P("犬用牛肉干 200g", 3900, 20), P("宠物营养膏 120g", 5900, 45))


def _skincare() -> tuple[ProductSpec, ...]:
    return (P("氨基酸温和洁面乳 120g", 8900), P("玻尿酸保湿爽肤水 200ml", 15800),
            P("烟酰胺精华液 30ml", 29800, 45), P("修护保湿面霜 50g", 32800),
            P("淡纹紧致眼霜 15g", 39800, 90), P("清爽防晒霜 SPF50 50ml", 16800, 45),
            P("补水面膜 10片", 9900, 30), P("温和卸妆油 200ml", 12800),
            P("保湿乳液 100ml", 18800), P("烟酰胺身体乳 250ml", 8900),
            P("护手霜 50g×3", 5900), P("男士控油洁面 100g", 6900),
            P("男士清爽保湿乳 100ml", 12800), P("修护精华面霜 礼盒装", 59900, 90),
            P("维C亮肤精华 30ml", 25800, 45), P("舒缓修护喷雾 150ml", 9800, 45))


def _personal_care() -> tuple[ProductSpec, ...]:
    return (P("控油去屑洗发水 500ml", 5900), P("修护护发素 500ml", 5900),
            P("氨基酸沐浴露 750ml", 6900), P("美白牙膏 120g×3", 4900, 30),
            P("软毛牙刷 4支装", 2900, 90), P("漱口水 500ml", 3900, 30),
            P("泡沫洗手液 300ml", 2900, 30), P("剃须刀片 4片装", 8900, 60),
            P("日用卫生巾 10片×3", 3900, 28), P("婴儿湿巾 80抽×3", 3900, 14),
            P("洗脸巾 棉柔巾 100抽×3", 4900, 20), P("儿童牙膏 60g", 2500, 45),
            P("电动牙刷替换头 4支", 9900, 90), P("防脱洗发水 400ml", 9800))


def _grain() -> tuple[ProductSpec, ...]:
    return (P("五常大米 5kg", 8900), P("东北珍珠米 10kg", 9900, 50),
            P("泰国香米 5kg", 7900), P("压榨花生油 5L", 11900, 45),
            P("非转基因菜籽油 5L", 8900, 45), P("特级初榨橄榄油 1L", 12900, 40),
            P("高筋小麦粉 5kg", 3900, 45), P("龙须挂面 1kg", 1290, 20),
            P("特级生抽 1.9L", 2990, 45), P("镇江香醋 500ml", 1290, 60),
            P("蚝油 700g", 1590, 45), P("散养鸡蛋 30枚", 3990, 10),
            P("杂粮组合 2.5kg", 5990, 30), P("有机黑米 2kg", 4590, 40))


def _cleaning() -> tuple[ProductSpec, ...]:
    return (P("深层洁净洗衣液 3kg", 5900, 45), P("三合一洗衣凝珠 52颗", 6900, 40),
            P("衣物柔顺剂 2.5L", 4900), P("柠檬洗洁精 1.5kg", 1990, 40),
            P("厨房重油污清洁剂 500ml", 2900), P("地板清洁剂 2L", 3900),
            P("衣物除菌液 1L", 4900), P("加厚垃圾袋 100只", 1990, 30),
            P("抽纸 3层 100抽×24包", 5990, 30), P("卷纸 4层 27卷", 5490, 30),
            P("厨房纸 4卷", 2490, 30), P("马桶清洁剂 500g×2", 2990),
            P("洗碗机专用洗涤块 60块", 8900), P("除湿袋 6袋", 2990, 90))


def _snacks() -> tuple[ProductSpec, ...]:
    return (P("每日坚果 25g×30袋", 12900, 30), P("手剥山核桃 500g", 8900),
            P("风干牛肉干 250g", 6800), P("原味薯片 3袋", 1990), P("全麦苏打饼干 800g", 2990),
            P("黑巧克力 85% 100g×3", 4500), P("冻干草莓 100g", 3900), P("即食海苔 40g", 1590),
            P("低温酸奶 1kg", 2490, 7), P("无糖气泡水 480ml×15", 4950, 14),
            P("天然矿泉水 550ml×24", 3990, 14), P("NFC橙汁 1L×4", 6990, 10),
            P("即食燕麦片 1kg", 3990, 30), P("芝麻丸 300g", 4900), P("蛋黄酥 6枚", 3990),
            P("鲜花饼 10枚", 4590), P("纯牛奶 250ml×24", 6990, 14), P("猪肉脯 200g", 3990))


def _kitchen() -> tuple[ProductSpec, ...]:
    return (P("不粘炒锅 32cm", 29900), P("麦饭石平底锅 28cm", 19900),
            P("德式刀具 5件套", 49900), P("竹制砧板", 8900), P("316不锈钢保温杯 500ml", 15900),
            P("玻璃保鲜盒 6件套", 12900), P("IH电饭煲 4L", 69900), P("手冲咖啡壶 600ml", 15900),
            P("电动磨豆机", 29900), P("功夫茶具套装", 39900), P("陶瓷马克杯 2只装", 7900),
            P("骨瓷餐具 16件套", 35900), P("空气炸锅 5L", 49900), P("硅胶厨具 5件套", 9900))


def _gifts() -> tuple[ProductSpec, ...]:
    return (P("坚果礼盒 1.5kg", 19800), P("龙井茶叶礼盒", 39800), P("精品水果礼盒", 29800),
            P("即食燕窝礼盒", 59800), P("红酒双支礼盒", 39800), P("精品咖啡礼盒", 25800),
            P("零食大礼包", 12800),
            P("年货大礼包", 39800, season="spring_festival"),
            P("新春坚果礼盒", 25800, season="spring_festival"),
            P("广式月饼礼盒 8枚", 26800, season="mid_autumn"),
            P("流心奶黄月饼礼盒 6枚", 32800, season="mid_autumn"),
            P("嘉兴粽子礼盒 10只", 16800, season="dragon_boat"))


CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec("baby_formula", "婴幼儿奶粉", "FML", 21, 0.035, _formula()),
    CategorySpec("diapers", "纸尿裤", "DPR", 14, 0.045, _diapers()),
    CategorySpec("coffee", "咖啡豆", "COF", 30, 0.07, _coffee()),
    CategorySpec("tea", "茶叶", "TEA", 45, 0.06, _tea()),
    CategorySpec("pet", "宠物食品与用品", "PET", 30, 0.065, _pets()),
    CategorySpec("skincare", "护肤品", "SKN", 60, 0.07, _skincare()),
    CategorySpec("personal_care", "个人护理", "PER", 40, 0.11, _personal_care()),
    CategorySpec("grain_oil", "米面粮油", "GRN", 30, 0.12, _grain()),
    CategorySpec("cleaning", "家居清洁", "CLN", 60, 0.10, _cleaning()),
    CategorySpec("snacks", "零食饮料", "SNK", None, 0.22, _snacks()),
    CategorySpec("kitchen", "厨房用品", "KIT", None, 0.04, _kitchen()),
    CategorySpec("gifts", "节日礼盒", "GFT", None, 0.045, _gifts()),
)
CATEGORY_INDEX = {c.code: i for i, c in enumerate(CATEGORIES)}


@dataclass(frozen=True)
class ProductRef:
    """What the purchase simulation needs to know about a product."""

    index: int
    id: uuid.UUID
    category: int  # index into CATEGORIES; -1 for products added after the purchases
    category_id: uuid.UUID
    price_minor: int
    cycle_days: int | None  # product's or category's replenishment cycle
    season: str | None
    popularity: float  # relative weight within its category (0 for seasonal items)


def create_catalogue(session: Session, *, rng: np.random.Generator,
                     created_at: datetime) -> list[ProductRef]:
    """Insert the categories and products; popularity within a category is Zipf-like."""
    category_ids = uuid7_batch(rng, [unix_ms(created_at)] * len(CATEGORIES))
    session.execute(insert(Category), [
        {"id": cid, "code": c.code, "name": c.name, "replenish_days": c.replenish_days}
        for cid, c in zip(category_ids, CATEGORIES, strict=True)
    ])
    refs: list[ProductRef] = []
    rows = []
    for ci, (cid, cat) in enumerate(zip(category_ids, CATEGORIES, strict=True)):
        ids = uuid7_batch(rng, [unix_ms(created_at)] * len(cat.products))
        ranks = rng.permutation(len(cat.products))
        for pi, (pid, spec) in enumerate(zip(ids, cat.products, strict=True)):
            rows.append({"id": pid, "sku": f"{cat.sku_prefix}-{pi + 1:03d}", "name": spec.name,
                         "category_id": cid, "price_minor": spec.price_minor,
                         "replenish_days": spec.replenish_days, "active": True})
            popularity = 0.0 if spec.season else 1.0 / (1.0 + float(ranks[pi])) ** 0.8
            refs.append(ProductRef(
                index=len(refs), id=pid, category=ci, category_id=cid, price_minor=spec.price_minor,
                cycle_days=spec.replenish_days or cat.replenish_days, season=spec.season,
                popularity=popularity))
    session.execute(insert(Product), rows)
    return refs
