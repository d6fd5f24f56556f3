"""Writes pii.json beside this file: valid card numbers of several brands, IBANs of several countries, Spanish
DNI/NIE/CIF and Italian codici fiscali and partite IVA, all generated (check digits computed with
python-stdnum, nothing real), set in en/es/it sentences; and near-misses that must stay as they are.

Deterministic (a fixed seed): ``python tests/enrichment/golden/make_pii.py`` rewrites the same file.
The tests read pii.json and also use the generators here for property tests.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from stdnum import iban, luhn
from stdnum.es import cif, dni, nie
from stdnum.it import codicefiscale

HERE = Path(__file__).resolve().parent

# brand -> (prefixes, length, grouping)
BRANDS: dict[str, tuple[list[str], int, tuple[int, ...]]] = {
    "visa": (["4"], 16, (4, 4, 4, 4)),
    "visa13": (["4"], 13, (4, 4, 5)),
    "mastercard": (["51", "52", "53", "54", "55"], 16, (4, 4, 4, 4)),
    "mastercard2": (["2221", "2300", "2501", "2720"], 16, (4, 4, 4, 4)),
    "amex": (["34", "37"], 15, (4, 6, 5)),
    "discover": (["6011", "65"], 16, (4, 4, 4, 4)),
    "jcb": (["3528", "3540", "3589"], 16, (4, 4, 4, 4)),
    "diners": (["36", "300", "305"], 14, (4, 6, 4)),
    "unionpay": (["62"], 19, (4, 4, 4, 4, 3)),
    "maestro": (["6759", "5018"], 16, (4, 4, 4, 4)),
}

# country -> BBAN pattern (d digit, a capital letter, c either)
IBAN_BBAN: dict[str, str] = {
    "ES": "d" * 20,
    "IT": "a" + "d" * 10 + "c" * 12,
    "DE": "d" * 18,
    "FR": "d" * 10 + "c" * 11 + "dd",
    "GB": "aaaa" + "d" * 14,
    "NL": "aaaa" + "d" * 10,
    "PT": "d" * 21,
    "BE": "d" * 12,
    "MT": "aaaa" + "d" * 5 + "c" * 18,
}

_ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ALNUM = "0123456789" + _ALPHA


def pan(rng: random.Random, brand: str) -> str:
    prefixes, length, _ = BRANDS[brand]
    body = rng.choice(prefixes)
    body += "".join(rng.choice("0123456789") for _ in range(length - 1 - len(body)))
    return body + luhn.calc_check_digit(body)


def group(digits: str, sizes: tuple[int, ...], sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(digits[i:i + n])
        i += n
    return sep.join(out)


def pan_text(rng: random.Random, brand: str, sep: str | None = None) -> str:
    number = pan(rng, brand)
    sep = rng.choice([" ", "-", ""]) if sep is None else sep
    return group(number, BRANDS[brand][2], sep) if sep else number


def make_iban(rng: random.Random, country: str) -> str:
    pattern = IBAN_BBAN[country]
    for _ in range(100_000):
        bban = "".join(rng.choice("0123456789") if p == "d" else rng.choice(_ALPHA) if p == "a"
                       else rng.choice(_ALNUM) for p in pattern)
        number = country + iban.calc_check_digits(country + "00" + bban) + bban
        if iban.is_valid(number):
            return number
    raise AssertionError(f"no valid IBAN for {country}")


def iban_print(number: str) -> str:
    return " ".join(number[i:i + 4] for i in range(0, len(number), 4))


def make_dni(rng: random.Random) -> str:
    digits = f"{rng.randrange(10**7, 10**8):08d}"
    return digits + dni.calc_check_digit(digits)


def make_nie(rng: random.Random) -> str:
    body = rng.choice("XYZ") + f"{rng.randrange(10**7):07d}"
    return body + nie.calc_check_digit(body)


def make_cif(rng: random.Random) -> str:
    body = rng.choice("ABEH") + f"{rng.randrange(10**7):07d}"
    return body + cif.calc_check_digits(body)[0]  # the digit form, as A/B/E/H companies use


_CF_MONTHS = "ABCDEHLMPRST"


def make_cf(rng: random.Random) -> str:
    day = rng.randrange(1, 29) + (40 if rng.random() < 0.5 else 0)
    body = ("".join(rng.choice("BCDFGLMNPRSTVZ") for _ in range(3)) + "".join(rng.choice("BCDFGLMNPRST")
            for _ in range(2)) + rng.choice("AEIOU") + f"{rng.randrange(40, 100):02d}" + rng.choice(_CF_MONTHS)
            + f"{day:02d}" + rng.choice("ABCDEFGHLMZ") + f"{rng.randrange(1, 1000):03d}")
    return body + codicefiscale.calc_check_digit(body)


def make_piva(rng: random.Random) -> str:
    body = f"{rng.randrange(10**7):07d}" + f"{rng.randrange(1, 101):03d}"
    return body + luhn.calc_check_digit(body)


def one_digit_wrong(rng: random.Random, text: str) -> str:
    """The same text with one of its digits changed (Luhn, mod 97 and the other checks all catch that)."""
    positions = [i for i, c in enumerate(text) if c.isdigit()]
    i = rng.choice(positions)
    new = rng.choice([d for d in "0123456789" if d != text[i]])
    return text[:i] + new + text[i + 1:]


TEMPLATES: dict[str, dict[str, list[str]]] = {
    "card": {
        "en": ["Hi, please charge my card {x}, expiry 09/27.", "My card number is {x} and it was declined.",
               "can you refund to {x}? thanks", "Card: {x}"],
        "es": ["Hola, cobrad en mi tarjeta {x}, caduca el 09/27.", "Mi número de tarjeta es {x} y me la rechazan.",
               "podéis devolverlo a la {x}? gracias", "Tarjeta {x}."],
        "it": ["Buongiorno, addebitate sulla carta {x}, scadenza 09/27.", "Il numero della mia carta è {x} ma viene rifiutata.",
               "potete rimborsare sulla {x}? grazie", "Carta:{x}"],
    },
    "iban": {
        "en": ["Please send the refund to IBAN {x}.", "my account is {x}, thanks"],
        "es": ["Haced la devolución a la cuenta {x} por favor.", "IBAN: {x}"],
        "it": ["Per il rimborso il mio IBAN è {x}.", "iban {x} grazie"],
    },
    "es_dni": {
        "en": ["My Spanish ID is {x}."],
        "es": ["Mi DNI es {x}, a nombre de Laura.", "DNI:{x}", "el dni {x} y el pedido es el 4512"],
        "it": ["Il mio documento spagnolo è {x}."],
    },
    "es_nie": {
        "en": ["NIE {x} for the contract please"],
        "es": ["Mi NIE es {x}.", "Tengo NIE ({x}), no DNI."],
        "it": ["Il NIE di mio marito è {x}."],
    },
    "es_cif": {
        "en": ["Please invoice our company, CIF {x}."],
        "es": ["La factura a nombre de la empresa, CIF {x}.", "CIF: {x}"],
        "it": ["Fattura alla società spagnola con CIF {x}."],
    },
    "it_codice_fiscale": {
        "en": ["My Italian tax code is {x}."],
        "es": ["Mi código fiscal italiano es {x}."],
        "it": ["Il mio codice fiscale è {x}.", "CF {x}, intestatario del contratto", "codice fiscale: {x}"],
    },
    "it_partita_iva": {
        "en": ["Our Italian VAT number is IT{x}."],
        "es": ["La partita IVA de la empresa italiana es {x}."],
        "it": ["Fattura con partita IVA {x} per favore.", "P.IVA {x}"],
    },
}

# policy "all" only (phones read in the message language's region: en GB, es ES, it IT)
OPTIONAL: list[dict[str, object]] = [
    {"lang": "en", "text": "Call me on +44 20 7946 0958 after five.", "secrets": [["phone", "+44 20 7946 0958"]]},
    {"lang": "en", "text": "my mobile is 07911 123456, or email jane.doe@example.co.uk",
     "secrets": [["phone", "07911 123456"], ["email", "jane.doe@example.co.uk"]]},
    {"lang": "es", "text": "Llamadme al 612 345 678 o al +34 912 345 678.",
     "secrets": [["phone", "612 345 678"], ["phone", "+34 912 345 678"]]},
    {"lang": "es", "text": "Mi correo es maria.lopez+pedidos@correo.es, gracias.",
     "secrets": [["email", "maria.lopez+pedidos@correo.es"]]},
    {"lang": "it", "text": "Il mio cellulare è 312 345 6789, la mail g.rossi@posta.it",
     "secrets": [["phone", "312 345 6789"], ["email", "g.rossi@posta.it"]]},
    {"lang": "it", "text": "Richiamatemi allo 06 1234 5678 oppure +39 347 123 4567",
     "secrets": [["phone", "06 1234 5678"], ["phone", "+39 347 123 4567"]]},
]

# must stay as they are under every policy (phones read in the message language's region)
NEAR_MISS_FIXED: list[tuple[str, str]] = [
    ("en", "Where is order 4111-2222-3333? It was due on 12/05/2024."),
    ("en", "I paid $1,299.99 on 2024-05-12 and again £1,299.99 on 13.05.2024."),
    ("en", "UPS tracking 1Z999AA10123456784, it says out for delivery."),
    ("en", "USPS tracking 9400 1000 0000 0000 0000 00 has not moved."),
    ("en", "FedEx 7489 1234 5678 was scanned in Memphis."),
    ("en", "Royal Mail AB123456789GB, invoice INV-2024-000123, ticket #100234567."),
    ("en", "The order number 1000 0000 0000 0008 is on the receipt."),
    ("en", "Total 4,111.11 for 16 items, ref 2024/05/12-0001, postcode SW1A 1AA."),
    ("en", "My meeting is at 10:30 on 5 June 2024, room 4111."),
    ("en", "Serial number SN 4111 1111 1111 1112 on the back of the router."),
    ("es", "¿Dónde está el pedido 4111-2222-3333? Tenía que llegar el 12/05/2024."),
    ("es", "Pagué 1.234,56 € el 12-05-2024 y otros 12.500,00 EUR en marzo."),
    ("es", "El envío de Correos PK123456789ES sigue en Madrid 28001."),
    ("es", "El pedido 12345678 a las 10 y la factura FAC-2024/00123."),
    ("es", "Nº de cliente 000123456789, contrato 2024-000987."),
    ("es", "La referencia DHL JD014600006281234567 no aparece."),
    ("es", "Mi DNI termina en 5678, el resto no lo quiero dar."),
    ("it", "Dov'è l'ordine 4111-2222-3333? Doveva arrivare il 12/05/2024."),
    ("it", "Ho pagato 1.234,56 € il 12.05.2024, fattura n. 2024/00123."),
    ("it", "La spedizione BRT 0612345678901234 è ferma a Bologna 40121."),
    ("it", "Il numero pratica è 20240512000123, codice cliente 123456."),
    ("it", "Il codice sconto ESTATE2024 non funziona sull'ordine 100234567."),
    ("it", "Ci vediamo alle 10:30 del 5 giugno 2024 in via Roma 41."),
]


def build(seed: int = 16) -> dict[str, object]:
    rng = random.Random(seed)
    secrets: list[dict[str, object]] = []
    near: list[dict[str, object]] = [{"lang": lang, "text": text} for lang, text in NEAR_MISS_FIXED]

    def add(kind: str, value: str, lang: str) -> None:
        template = rng.choice(TEMPLATES[kind][lang])
        secrets.append({"lang": lang, "text": template.format(x=value), "secrets": [[kind, value]]})

    langs = ["en", "es", "it"]
    for brand in BRANDS:
        for sep in (" ", "-", ""):
            lang = rng.choice(langs)
            value = pan_text(rng, brand, sep)
            add("card", value, lang)
            wrong = one_digit_wrong(rng, value)
            near.append({"lang": lang, "text": rng.choice(TEMPLATES["card"][lang]).format(x=wrong)})
    for country in IBAN_BBAN:
        number = make_iban(rng, country)
        for value in (iban_print(number), number, number.lower()):
            add("iban", value, rng.choice(langs))
        near.append({"lang": "en", "text": f"Please send the refund to IBAN {one_digit_wrong(rng, iban_print(number))}."})
    for kind, make in (("es_dni", make_dni), ("es_nie", make_nie), ("es_cif", make_cif),
                       ("it_codice_fiscale", make_cf), ("it_partita_iva", make_piva)):
        for _ in range(4):
            value = make(rng)
            add(kind, value, rng.choice(langs))
        value = make(rng)
        near.append({"lang": "es" if kind.startswith("es") else "it",
                     "text": f"Referencia {one_digit_wrong(rng, value)} del pedido."})
    # several in one message
    for _ in range(6):
        card, acc, dni_ = pan_text(rng, "visa", " "), iban_print(make_iban(rng, "ES")), make_dni(rng)
        secrets.append({"lang": "es", "text": f"Hola, soy Ana (DNI {dni_}). Pagué con la tarjeta {card} pero "
                                              f"prefiero el reembolso en {acc}. Pedido 4111-2222-3333 del 12/05/2024.",
                        "secrets": [["es_dni", dni_], ["card", card], ["iban", acc]]})
        cf, card = make_cf(rng), pan_text(rng, "mastercard", "-")
        secrets.append({"lang": "it", "text": f"Sono Marco, CF {cf}; carta {card} scad. 11/26, importo 1.234,56 €.",
                        "secrets": [["it_codice_fiscale", cf], ["card", card]]})
    # a card with the expiry typed right after it, and one in a long message
    card = pan_text(rng, "visa", " ")
    secrets.append({"lang": "en", "text": f"card {card} 12 25 cvv on the back", "secrets": [["card", card]]})
    card = pan_text(rng, "amex", " ")
    filler = "I have been a customer for years and never had a problem like this one. " * 6
    secrets.append({"lang": "en", "text": filler + f"The card was {card}. " + filler, "secrets": [["card", card]]})
    # the codice fiscale in omocodia form (digits replaced by letters), the way the revenue agency issues it
    # when two people share one
    cf = make_cf(rng)
    omo = cf[:13] + cf[13:15].translate(str.maketrans("0123456789", "LMNPQRSTUV"))
    omo += codicefiscale.calc_check_digit(omo)
    secrets.append({"lang": "it", "text": f"Il codice fiscale (omocodia) è {omo}.",
                    "secrets": [["it_codice_fiscale", omo]]})
    return {"seed": seed, "secrets": secrets, "optional": OPTIONAL, "near_misses": near}


def main() -> None:
    data = build()
    lines = ["{", f'"seed": {data["seed"]},']
    for key in ("secrets", "optional", "near_misses"):
        items = [json.dumps(item, ensure_ascii=False) for item in data[key]]  # type: ignore[attr-defined]
        lines.append(f'"{key}": [\n' + ",\n".join(items) + "\n]" + ("," if key != "near_misses" else ""))
    lines.append("}")
    (HERE / "pii.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(data['secrets'])} texts with secrets, {len(data['optional'])} with phones and e-mails, "
          f"{len(data['near_misses'])} near-misses")


if __name__ == "__main__":
    main()
