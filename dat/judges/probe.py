"""Probe judge: does the steered agent still follow its system prompt when asked a probe question?

An instruction-stability task gives an agent a system prompt holding one rule-checkable instruction
("start every reply with the letter B", "you are Ines, a glassblower in Porto", "your code word is
MARIGOLD", "answer in French"), lets it talk, and then asks a *probe question* whose answer shows
whether the instruction still holds. The answer is scored by a **test**: a pure, deterministic
function of the answer's text with a score in [0, 1]. Tests are small dicts, carried by the task's
record (``DialogueRecord.checks``) as ``{"kind": "probe", "agent": 0, "question": "...", "test": {...}}``:

==================  ====================================================  ===========================================
kind                fields                                                score
==================  ====================================================  ===========================================
``first_letter``    ``letter``: one letter                                1 when the first letter of the answer is it
``starts_with``     ``text``: a word or phrase                            1 when the answer opens with it
``ends_with``       ``text``: a word, phrase or punctuation ("?")         1 when the answer closes with it
``lowercase``       none                                                  share of the answer's letters in lower case
``uppercase``       none                                                  share of the answer's letters in upper case
``avoid_chars``     ``chars``: characters, e.g. ","                       1 when none of them occurs
``max_words``       ``n``: a positive integer                             1 up to n words, else n / words
``contains``        ``items``: strings or lists of alternatives           share of items found (whole words, any case)
``avoids``          ``items``: strings or lists of alternatives           1 - share of items found
``language``        ``lang``: one of :data:`LANGUAGES`                     share of the language's own function words
                                                                          among the function words recognised
``sentiment``       ``target``: positive or negative                      VADER compound score towards the target,
                                                                          clipped to [0, 1] (neutral text: 0)
==================  ====================================================  ===========================================

An empty answer scores 0 on every test. ``language`` counts the words of the answer that belong to
exactly one of the shipped function-word lists (:data:`FUNCTION_WORDS`, written for this project,
nothing downloaded): the score is the share of those that belong to the target language, so an
English answer scores 0 for French, a French one 1, and an answer with no recognisable function
word 0.

>>> score({"kind": "first_letter", "letter": "b"}, "Bright mornings suit me.")
1.0
>>> score({"kind": "max_words", "n": 5}, "one two three four five six seven eight nine ten")
0.5
>>> score({"kind": "language", "lang": "fr"}, "Je visite le musée avec mes amis.")
1.0

:class:`ProbeJudge` is the judge backend (``judge=probe``): its goal score is 10 x the test's score of
the steered agent's last line, which must answer the probe question (the partner's line before it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dat.judges.base import JudgeStats, settings_hash
from dat.judges.judgement import AgentScores, Judgement, Usage
from dat.records import DialogueRecord

FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset("""the a an and or but of to in on at for with from by is are was were be been have has
        had do does did i you he she it we they my your his her our their this that these those not no
        what which who when where why how very there here will would can could should about because""".split()),
    "fr": frozenset("""le la les un une des du au aux et ou mais de à dans sur pour avec sans par est sont
        était être avoir ai as avons je tu il elle nous vous ils elles mon ma mes ton ta tes son sa ses
        notre votre leur ce cette ces qui que quoi où quand comment pourquoi pas ne très aussi
        bien c'est j'ai il y chez moi toi lui me te se""".split()),
    "es": frozenset("""el la los las un una unos unas y o pero de del al en con sin por para es son era
        estar estoy está están ser soy tengo tiene yo tú él ella nosotros vosotros ellos ellas mi mis tu
        tus su sus nuestro este esta estos estas ese esa que qué quién dónde cuándo cómo porque muy
        también no sí hay me te se lo""".split()),
    "de": frozenset("""der die das den dem des ein eine einen einem einer und oder aber von zu in im auf
        für mit ohne bei ist sind war waren sein haben habe hat ich du er sie es wir ihr mein meine dein
        deine sein seine unser euer dieser diese dieses was wer wo wann wie warum nicht kein keine sehr
        auch gern gerne noch schon""".split()),
    "it": frozenset("""il lo la gli le un uno una e o ma di da del della dei delle nel nella con senza per
        su è sono era essere avere ho hai ha abbiamo io tu lui lei noi voi loro mio mia miei tuo tua
        questo questa quello quella che chi dove quando come perché non molto anche sì ci mi ti""".split()),
}
"""Short, hand-written lists of each language's commonest function words (articles, pronouns,
prepositions, auxiliaries). A word in two lists ("la", "de", "que") tells nothing and is ignored.
French elisions (``j'aime``, ``c'était``, ``qu'il``) count as French (:data:`ELISIONS`)."""

ELISIONS: dict[str, str] = {"j'": "fr", "c'": "fr", "qu'": "fr"}
"""Elided words that mark a language (``l'`` and ``d'`` are Italian too, so they mark none)."""

LANGUAGES = tuple(FUNCTION_WORDS)
KINDS = ("first_letter", "starts_with", "ends_with", "lowercase", "uppercase", "avoid_chars", "max_words",
         "contains", "avoids", "language", "sentiment")
_FIELDS = {"first_letter": {"letter"}, "starts_with": {"text"}, "ends_with": {"text"}, "lowercase": set(),
           "uppercase": set(), "avoid_chars": {"chars"}, "max_words": {"n"}, "contains": {"items"},
           "avoids": {"items"}, "language": {"lang"}, "sentiment": {"target"}}
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+", re.UNICODE)
_EDGE = "\"'“”‘’«»()[]*_ \t\n"
_END_PUNCT = ".!?;:,…" + _EDGE


@dataclass(frozen=True)
class ProbeTest:
    """One parsed, validated test of an answer (see the module docstring for the kinds)."""

    kind: str
    letter: str = ""
    text: str = ""
    chars: str = ""
    n: int = 0
    items: tuple[tuple[str, ...], ...] = ()
    lang: str = ""
    target: str = ""

    def describe(self) -> str:
        detail = {"first_letter": self.letter, "starts_with": self.text, "ends_with": self.text,
                  "avoid_chars": self.chars, "max_words": str(self.n), "language": self.lang,
                  "sentiment": self.target,
                  "contains": " & ".join("|".join(alts) for alts in self.items),
                  "avoids": " & ".join("|".join(alts) for alts in self.items)}.get(self.kind, "")
        return f"{self.kind} {detail!r}" if detail else self.kind


def parse_test(spec: Any, where: str = "test") -> ProbeTest:
    """Validate one test dict; ``ValueError`` names ``where``, the field and a fix.

    >>> parse_test({"kind": "contains", "items": ["Ines", ["glass", "glassblower"]]}).items
    (('Ines',), ('glass', 'glassblower'))
    """
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: a test must be an object like {{\"kind\": \"first_letter\", \"letter\": \"B\"}}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown test kind {kind!r}; use one of {', '.join(KINDS)}")
    allowed = _FIELDS[kind] | {"kind"}
    extra = sorted(set(spec) - allowed)
    if extra:
        raise ValueError(f"{where}: field {extra[0]!r} does not belong to a {kind} test (its fields: "
                         f"{sorted(allowed)})")
    missing = sorted(_FIELDS[kind] - set(spec))
    if missing:
        raise ValueError(f"{where}: a {kind} test needs {missing[0]!r}")
    if kind == "first_letter":
        letter = spec["letter"]
        if not (isinstance(letter, str) and len(letter) == 1 and letter.isalpha()):
            raise ValueError(f"{where}: 'letter' must be one letter, got {letter!r}")
        return ProbeTest(kind, letter=letter.lower())
    if kind in ("starts_with", "ends_with"):
        return ProbeTest(kind, text=_nonempty(spec["text"], "text", where))
    if kind == "avoid_chars":
        return ProbeTest(kind, chars=_nonempty(spec["chars"], "chars", where))
    if kind == "max_words":
        n = spec["n"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{where}: 'n' must be a positive whole number, got {n!r}")
        return ProbeTest(kind, n=n)
    if kind in ("contains", "avoids"):
        return ProbeTest(kind, items=_items(spec["items"], where))
    if kind == "language":
        if spec["lang"] not in LANGUAGES:
            raise ValueError(f"{where}: 'lang' must be one of {', '.join(LANGUAGES)}, got {spec['lang']!r}")
        return ProbeTest(kind, lang=spec["lang"])
    if kind == "sentiment":
        if spec["target"] not in ("positive", "negative"):
            raise ValueError(f"{where}: 'target' must be positive or negative, got {spec['target']!r}")
        return ProbeTest(kind, target=spec["target"])
    return ProbeTest(kind)


def _nonempty(value: Any, field: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: '{field}' must be a non-empty string, got {value!r}")
    return value.strip()


def _items(value: Any, where: str) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: 'items' must be a non-empty list of strings or lists of alternatives")
    out = []
    for k, item in enumerate(value):
        alts = [item] if isinstance(item, str) else item
        if not isinstance(alts, list) or not alts or not all(isinstance(a, str) and a.strip() for a in alts):
            raise ValueError(f"{where}: items[{k}] must be a non-empty string or a list of them, got {item!r}")
        out.append(tuple(a.strip() for a in alts))
    return tuple(out)


def _found(phrase: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.IGNORECASE) is not None


def words(text: str) -> list[str]:
    """The answer's words (letters, with an inner apostrophe kept, or digits), lower case."""
    return [w.lower().replace("’", "'") for w in _WORD.findall(text.replace("’", "'"))]


def language_share(text: str, lang: str) -> float:
    """Share of ``lang`` among the words of ``text`` that belong to exactly one function-word list."""
    hits = {name: 0 for name in LANGUAGES}
    for word in words(text):
        owners = [name for name, listed in FUNCTION_WORDS.items() if word in listed]
        head = word[: word.find("'") + 1] if "'" in word else ""
        if not owners and head in ELISIONS:
            owners = [ELISIONS[head]]
        if len(owners) == 1:
            hits[owners[0]] += 1
    total = sum(hits.values())
    return hits[lang] / total if total else 0.0


_VADER: Any = None


def _compound(text: str) -> float:
    global _VADER
    if _VADER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _VADER = SentimentIntensityAnalyzer()
    return float(_VADER.polarity_scores(text)["compound"])


def run_test(test: ProbeTest, answer: str) -> float:
    """The score in [0, 1] of ``answer`` on a parsed test (pure and deterministic)."""
    text = answer.strip()
    if not text:
        return 0.0
    kind = test.kind
    if kind == "first_letter":
        first = next((c for c in text if c.isalpha()), "")
        return float(first.lower() == test.letter)
    if kind == "starts_with":
        return float(re.match(rf"{re.escape(test.text)}(?!\w)", text.lstrip(_EDGE), re.IGNORECASE) is not None)
    if kind == "ends_with":
        if not any(c.isalnum() for c in test.text):  # punctuation: compare the raw ending
            return float(text.rstrip(_EDGE).endswith(test.text))
        body = text.rstrip(_END_PUNCT)
        return float(re.search(rf"(?<!\w){re.escape(test.text.rstrip(_END_PUNCT))}$", body, re.IGNORECASE)
                     is not None)
    if kind in ("lowercase", "uppercase"):
        letters = [c for c in text if c.isalpha() and c.lower() != c.upper()]
        if not letters:
            return 0.0
        same = sum(c.islower() if kind == "lowercase" else c.isupper() for c in letters)
        return same / len(letters)
    if kind == "avoid_chars":
        return float(not any(c in text for c in test.chars))
    if kind == "max_words":
        n = len(text.split())
        return 1.0 if n <= test.n else test.n / n
    if kind in ("contains", "avoids"):
        share = sum(any(_found(a, text) for a in alts) for alts in test.items) / len(test.items)
        return share if kind == "contains" else 1.0 - share
    if kind == "language":
        return language_share(text, test.lang)
    compound = _compound(text)
    return min(1.0, max(0.0, compound if test.target == "positive" else -compound))


def score(spec: dict[str, Any], answer: str) -> float:
    """Parse ``spec`` and score ``answer`` with it: ``run_test(parse_test(spec), answer)``."""
    return run_test(parse_test(spec), answer)


# ------------------------------------------------------------------------------------- probe checks
@dataclass(frozen=True)
class Probe:
    """A task's probe for one agent: the question the partner asks and the test of the answer."""

    question: str
    test: ProbeTest
    agent: int | None = None


def probe_check(question: str, test: dict[str, Any], agent: int | None = None) -> dict[str, Any]:
    """The record check that carries a probe (what ``envs.scenarios.probes`` tasks put in their records)."""
    check: dict[str, Any] = {"kind": "probe", "question": question, "test": dict(test)}
    if agent is not None:
        check["agent"] = agent
    return check


def parse_probe(check: Any, where: str = "probe") -> Probe:
    """Validate a probe check (``{"kind": "probe", "agent": 0, "question": ..., "test": {...}}``)."""
    if not isinstance(check, dict) or check.get("kind") != "probe":
        raise ValueError(f"{where}: a probe check is {{\"kind\": \"probe\", \"question\": ..., \"test\": {{...}}}}")
    extra = sorted(set(check) - {"kind", "agent", "question", "test"})
    if extra:
        raise ValueError(f"{where}: unknown field {extra[0]!r} (fields: kind, agent, question, test)")
    agent = check.get("agent")
    if agent is not None and agent not in (0, 1):
        raise ValueError(f"{where}: 'agent' must be 0 or 1, got {agent!r}")
    return Probe(_nonempty(check.get("question"), "question", where), parse_test(check.get("test"), f"{where}.test"),
                 agent)


def find_probe(record: DialogueRecord, agent: int) -> Probe | None:
    """The record's probe for ``agent`` (a probe without ``agent`` applies to the steered one), or None."""
    for k, check in enumerate(record.checks):
        if isinstance(check, dict) and check.get("kind") == "probe":
            probe = parse_probe(check, f"record {record.task_id!r} checks[{k}]")
            if (record.steered if probe.agent is None else probe.agent) == agent:
                return probe
    return None


def probe_answer(record: DialogueRecord, probe: Probe) -> str | None:
    """The steered agent's answer to the probe: its last line, when the partner's line before it asks the
    probe question (possibly with more text around it); else None."""
    turns = record.turns
    if len(turns) < 2 or turns[-1].agent != record.steered or turns[-2].agent == record.steered:
        return None
    return turns[-1].text if probe.question in turns[-2].text else None


class ProbeJudge:
    """``judge=probe``: goal = 10 x the probe test's score of the steered agent's answer to the probe question.

    A dialogue that does not end with the probe question and the steered agent's answer (it ended
    early, or the env was not told to ask it: ``env.probe=true``) is a failed judgement, never a 0.

    >>> from dat.records import DialogueRecord, Utterance
    >>> check = probe_check("Where do you live?", {"kind": "contains", "items": ["Oslo"]})
    >>> rec = DialogueRecord("t", "", ("A", "B"), ("", ""), ("", ""),
    ...     (Utterance(1, "Where do you live?"), Utterance(0, "In Oslo, by the fjord.")), steered=0, checks=(check,))
    >>> ProbeJudge()([rec])[0].scores[0].goal
    10.0
    """

    name = "probe"
    model = "probe-tests"

    def __init__(self) -> None:
        self.version = "probe-v1:" + settings_hash([KINDS, sorted((k, sorted(v)) for k, v in FUNCTION_WORDS.items())])
        self.stats = JudgeStats()

    def __call__(self, records: Sequence[DialogueRecord]) -> list[Judgement]:
        out = []
        for record in records:
            start = time.perf_counter()
            judgement = self._judge(record).with_usage(latency_s=time.perf_counter() - start)
            self.stats.record(judgement)
            out.append(judgement)
        return out

    def metrics(self) -> dict[str, float]:
        return self.stats.metrics()

    def _judge(self, record: DialogueRecord) -> Judgement:
        probe = find_probe(record, record.steered)
        if probe is None:
            return Judgement.failed(f"task {record.task_id!r} has no probe for agent {record.steered}; judge=probe "
                                    "needs a probe set (e.g. env.scenarios.train=probes:train)",
                                    self.name, self.model, self.version, Usage())
        answer = probe_answer(record, probe)
        if answer is None:
            return Judgement.failed("the dialogue does not end with the probe question and the steered agent's "
                                    "answer (it ended early, or env.probe is false)",
                                    self.name, self.model, self.version, Usage())
        value = run_test(probe.test, answer)
        scores = [AgentScores(), AgentScores()]
        reasoning: list[dict[str, str]] = [{}, {}]
        scores[record.steered] = AgentScores(goal=10.0 * value)
        reasoning[record.steered] = {"goal": f"{probe.test.describe()}: {value:.2f}"}
        return Judgement(scores=(scores[0], scores[1]), backend=self.name, model=self.model,
                         reasoning=(reasoning[0], reasoning[1]), version=self.version)
