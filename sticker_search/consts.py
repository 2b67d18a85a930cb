"""Limits, weights and constants of sticker search, each with the reason beside it."""

from __future__ import annotations

# Languages the shipped catalog carries keywords for (the `emoji` package's CLDR-derived names).
LANGUAGES: tuple[str, ...] = (
    "en", "es", "fr", "de", "it", "pt", "ja", "ko", "zh", "ru", "fa", "id", "tr", "ar",
)
DEFAULT_LANGUAGE = "en"

# Query limits: a sticker picker sends a few words; anything longer is abuse or a mistake.
MAX_QUERY_CHARS = 200
MAX_QUERY_TERMS = 8
# Page sizes: one picker screen is ~20 stickers; 100 bounds the response size.
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_OFFSET = 1000

# Prefix matching: a one-letter prefix would expand to thousands of terms; only the shortest
# (most likely intended) completions count, in order of length.
MAX_PREFIX_EXPANSIONS = 32
# The match count of a one-word query of at least this many expansions is kept once computed,
# for at most this many words (a few hundred KB): counting a short prefix's matches is a union
# of up to 32 posting sets, a fifth of its search time.
TOTAL_CACHE_MIN_EXPANSIONS = 8
TOTAL_CACHE_SIZE = 20_000
# Words before the last are finished: they match whole, or with up to this many letters more
# (plural and other inflection endings: flag -> flags, smile -> smiles).
INFLECTION_CHARS = 2
# Typo tolerance (one edit, Damerau-Levenshtein/OSA) only for terms long enough that a single
# edit rarely turns one real word into another.
MIN_TYPO_TERM_CHARS = 4

# Match weights: an exact word beats a completion, which beats a one-edit correction.
WEIGHT_EXACT = 1.0
WEIGHT_PREFIX = 0.7
WEIGHT_INFIX = 0.45  # a CJK term found inside a longer unsegmented word
WEIGHT_TYPO = 0.5
# ... and lower still for a word that also begins indexed terms (likely unfinished: "pizz").
TYPING_TYPO_FACTOR = 0.5
# A one-edit neighbour differing only in the last letter is another form of the same word
# (fleurs/fleur, кошки/кошка): nearly as good as the word itself.
WEIGHT_INFLECTED = 0.8
# ... when the last letter is another one (кошки/кошка), rather than one more or less
# (dogs/dog), other words of other languages share the stem too (dogs/doga): less sure.
SWAPPED_ENDING_FACTOR = 0.8
# ... only with a shared stem this long: shorter ones are often other words or the start of a
# word being typed (elep is not a form of "ele", nor hapy of "hap").
MIN_INFLECTION_STEM = 4
# A word with no match at all is looked up by its stem, up to this many final letters shorter
# and at least MIN_STEM_CHARS long (Russian, Turkish, German endings: котом -> кот).
WEIGHT_STEM = 0.4
MAX_STEM_CUT = 3
MIN_STEM_CHARS = 3
MIN_HANGUL_STEM_CHARS = 2  # a Hangul syllable is a whole consonant-vowel(-consonant) block
# Field weights: the sticker's own name in a language beats aliases and Unicode character names.
FIELD_NAME = 1.0
FIELD_ALIAS = 0.85
# CLDR annotation keywords (cat -> "pet"): related, but weaker than a word of the name itself.
FIELD_TAG = 0.8
FIELD_UNICODE = 0.5
# emojilib's crowd-sourced keywords (English): often apt ("lol", "yes"), sometimes loose
# ("black" for the red heart, from its Unicode name), so below CLDR tags.
FIELD_EMOJILIB = 0.75
# The picker lexicon (lexicon/concepts.json): a phrase names its concept's first sticker at
# full weight and each later one a step lower, so the canonical sticker ranks first.
FIELD_LEXICON = 1.0
LEXICON_RANK_DECAY = 0.06
# Popularity prior (catalog/popular.txt): weights are scaled by (1 + this x popularity in
# [0, 1]); large enough to order near-equal matches (❤️ before 💛 for "heart"), small enough
# never to lift a weaker kind of match (a completion) over a stronger one (an exact word).
POPULARITY_WEIGHT = 0.2
# Two adjacent query words that also stand together in a name or phrase of a sticker ("good
# night", "thumbs up") add this fraction of that phrase's weight.
PHRASE_BONUS = 0.5
# With a language hint, keywords of other languages still match, at this factor.
OTHER_LANGUAGE_FACTOR = 0.6
# Stickers that match every query term rank above those matching only some.
PARTIAL_MATCH_FACTOR = 0.3
# A sticker whose name has many words is a weaker match for any one of them.
NAME_LENGTH_PENALTY = 0.12
# Skin-tone variants rank just below the base sticker they vary.
SKIN_TONE_FACTOR = 0.92

# Words that carry no meaning on their own in sticker names; never indexed, dropped from queries
# (articles, prepositions, conjunctions and pronouns of the catalog's languages; a query word of
# the picker lexicon is still indexed as a keyword of its own, e.g. "no").
_STOPWORDS_TEXT = """
    a an the of with and or in on at to for by from i me my you your u it is are am so much
    very im this that
    de del la las el los y con en un una al te me mi tu yo lo que es muy
    le les des du et avec au aux une je t moi toi il elle on nous vous c ca m j s
    der die das den dem des und mit im am zum zur ein eine einem einer ich du dich mir mich
    ist sehr zu
    di da dello della delle dei degli il lo gli e con nel sul per ti io che
    do dos das com no na um uma eu voce o os as
    в во на с со и у к ко по за для о об обо из от до я ты тебя меня мне а но же
    ve bu cok
    aku kamu yang dan di ke untuk
    و به از که را
"""
# Segmenting unspaced (CJK) text: pieces are at most this long (longer keywords are rare), and
# these particles carry no meaning on their own (Japanese の, は, が...; Chinese 的, 了).
MAX_SEGMENT_CHARS = 8
SEGMENT_PARTICLES: frozenset[str] = frozenset("のはがをにでともへや的了吗呢吧")
STOPWORDS: frozenset[str] = frozenset(_STOPWORDS_TEXT.split())

# The web page's origin (sticker_search.web): the gateway keys are fetched at start while the
# rest of the stack may still be starting; give up after this many seconds.
WEB_KEYS_FETCH_TIMEOUT = 30.0
# Responses smaller than this are sent uncompressed (gzip framing would outweigh the saving).
WEB_MIN_GZIP_BYTES = 1024
