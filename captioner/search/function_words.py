"""English function words: the words a caption may repeat.

"a man and a woman on a beach" repeats "a" three times and is fine; "a cup of coffee
coffee" or "a cat and a cat" is a decoding failure. With ``no_repeat_words`` the
search lets a word appear at most once in a caption unless it is listed here:
articles, prepositions, conjunctions, pronouns, auxiliaries, a few quantity words,
and colours, which describe different things in one caption ("a black shirt and
black pants"; on val, letting colours repeat scored the same: CIDEr-D 0.462 against
0.465 on the half the search settings were chosen on). Even these never follow
themselves ("a blue blue truck", "a black and black shirt"): the search bans that
apart from this list.
"""

from __future__ import annotations

_LIST = """
a an the this that these those
of in on at to with without from by for as into onto over under above below
near next behind beside between through across along around during after before
up down out off about against among inside outside front top
and or but while
it its he his him she her they them their we our you your i my
is are was were be been being has have had do does
some one two three many other each
white black red blue green yellow brown grey gray pink orange purple silver gold golden
dark light
"""

FUNCTION_WORDS: frozenset[str] = frozenset(_LIST.split())
