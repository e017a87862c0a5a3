"""Agents: route, dose with units, exposure per dose, receptor action, evidence and sources.

Host-side metadata (never traced). Each route maps a dose to an average exposure over a step
(rate-averaged exposure: at month-long steps pulses and trough-peak cycles
are replaced by their average), expressed in the model's common currencies:

  e2       serum estradiol or estradiol-equivalent exposure added, pg/mL
  t        serum testosterone added, ng/dL
  serm     SERM occupancy term S/K_S (dimensionless) and its bone efficacy eps_S in [0, 1]
  ai       aromatase-inhibitor dose / IC50 (the inhibited fraction is x / (1 + x))
  igf      relative rise of serum IGF-1 (0.5 = +50 %)

Exposures scale linearly with the dose actually taken (dose x adherence). The slopes are
label and trial pharmacokinetics; every number's source is next to it. Where no human PK/PD
exists (GH secretagogues on bone) the value is an assumption with evidence grade "low".
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXPOSURES = ("e2", "t", "serm_occ", "serm_ago", "ai", "igf")


@dataclass(frozen=True)
class Route:
    """One route of one agent: unit, plausible dose range per sex, exposure per dose unit."""

    dose_unit: str
    dose_range: dict  # sex ("female"/"male") -> (lo, hi); a missing sex = not used in that sex
    e2: float = 0.0  # pg/mL per dose unit
    t: float = 0.0  # ng/dL per dose unit
    serm_occ: float = 0.0  # S/K_S per dose unit
    serm_efficacy: float = 0.0  # eps_S, bone agonism of the SERM (0 antagonist, 1 = estradiol)
    ai: float = 0.0  # 1/IC50 in dose units
    igf: float = 0.0  # relative IGF-1 rise per dose unit
    pk: str = ""  # where the exposure slope comes from
    serm: str = ""  # the SERM whose efficacy this route carries ("" = none)
    pk_key: str = ""  # "agent.route" whose fitted exposure scale this route shares
    serm_fixed: bool = False  # the SERM dose is fixed by the product (not scaled by ``dose``)

    def exposure(self, dose, scale=1.0, efficacy=None, occupancy=1.0) -> dict:
        """Exposure (see module docstring) of ``dose`` taken continuously. ``scale`` multiplies
        the exposure slopes (not the SERM occupancy), ``occupancy`` the SERM occupancy and
        ``efficacy`` replaces eps_S: the fitted agent constants (``model.params.AgentParams``);
        values may be traced. A fixed-combination product (``serm_fixed``) carries the same
        SERM dose whatever its ``dose`` (the other component's content), so its occupancy does
        not scale with it."""
        eff = self.serm_efficacy if efficacy is None else efficacy
        occ = occupancy * self.serm_occ * (1.0 if self.serm_fixed else dose)
        return {"e2": scale * self.e2 * dose, "t": scale * self.t * dose,
                "serm_occ": occ, "serm_ago": eff * occ,
                "ai": scale * self.ai * dose, "igf": scale * self.igf * dose}


@dataclass(frozen=True)
class Agent:
    name: str
    kind: str  # estrogen, progestogen, androgen, aromatase_inhibitor, serm, tsec, gh_secretagogue
    mechanism: str
    routes: dict = field(default_factory=dict)  # route name -> Route
    evidence: str = ""
    sources: str = ""
    warning: str = ""  # printed with any summary that uses the agent

    @property
    def opposes_estrogen_in_uterus(self) -> bool:
        """Progestogens and bazedoxifene protect the endometrium from unopposed estrogen."""
        return self.kind in ("progestogen", "tsec") or self.name == "bazedoxifene"

    @property
    def is_estrogen(self) -> bool:
        return self.kind in ("estrogen", "tsec")


F = "female"
M = "male"
BZA_OCC_PER_MG = 3.0 / 20.0  # bazedoxifene S/K_S per mg/day (see its route below)

AGENTS_LIST = (
    Agent(
        "estradiol", "estrogen",
        "17beta-estradiol: ER agonist (RANKL down, OPG up, osteoclast apoptosis up, "
        "osteoblast survival up)",
        routes={
            "transdermal": Route(
                "ug/day", {F: (14.0, 100.0)}, e2=0.6,
                pk="geometric mean of four PK readings, pg/mL above baseline per ug/day: "
                   "matrix patches 50 ug/day ~35-55 pg/mL (Vivelle-Dot, Climara labels: 0.7, "
                   "1.1); 0.014 mg/day (Menostar label: Cavg 13.7 pg/mL, less a ~4.8 pg/mL "
                   "baseline: 0.64; ULTRA, Ettinger 2004 Obstet Gynecol 104:443: median 4.8 -> "
                   "8.5 pg/mL at 1 year: 0.27); their log SD is 0.59"),
            "oral": Route(
                "mg/day", {F: (0.25, 4.0)}, e2=40.0,
                pk="micronized estradiol 1 mg/day: serum E2 ~30-50 pg/mL at steady state "
                   "(Estrace label; Kuhl 2005 Climacteric 8 Suppl 1:3)"),
        },
        evidence="high (RCTs of BMD: PEPI 1996, ULTRA 2004, transdermal 50/100 ug "
                 "Arrenbrecht 2002; fractures with CEE: WHI 2003)",
        sources="Ettinger 2004 Obstet Gynecol 104:443; Arrenbrecht 2002 Osteoporos Int "
                "13:176; Kuhl 2005 Climacteric 8 Suppl 1:3; PEPI 1996 JAMA 276:1389"),
    Agent(
        "conjugated_estrogens", "estrogen",
        "conjugated equine estrogens (CEE): mixture of estrogens, ER agonist; exposure given "
        "as estradiol-equivalent bone activity",
        routes={"oral": Route(
            "mg/day", {F: (0.3, 1.25)}, e2=64.0,
            pk="0.625 mg ~ 1 mg oral estradiol ~ 50 ug/day patch in bone effect (~40 pg/mL "
               "E2-equivalent); 0.3 mg still prevents spine loss (Lindsay 2002 JAMA 287:2668)")},
        evidence="high (WHI 2003/2004: hip fracture HR 0.67 E+P, 0.61 E-alone; HOPE 2002)",
        sources="Lindsay 2002 JAMA 287:2668; Cauley 2003 JAMA 290:1729; Kuhl 2005"),
    Agent(
        "progesterone", "progestogen",
        "micronized progesterone: endometrial protection; no bone action modelled",
        routes={"oral": Route(
            "mg/day", {F: (100.0, 300.0)},
            pk="no bone exposure: PEPI CEE + micronized progesterone ~ CEE alone in BMD")},
        evidence="high for endometrial protection; no independent bone effect (PEPI 1996)",
        sources="PEPI 1996 JAMA 276:1389"),
    Agent(
        "medroxyprogesterone_acetate", "progestogen",
        "medroxyprogesterone acetate (MPA): endometrial protection; no bone action modelled",
        routes={"oral": Route(
            "mg/day", {F: (1.5, 10.0)},
            pk="no bone exposure: PEPI CEE + MPA ~ CEE alone in BMD; WHI E+P used 2.5 mg/day")},
        evidence="high for endometrial protection; no independent bone effect (PEPI 1996)",
        sources="PEPI 1996 JAMA 276:1389; WHI 2002 JAMA 288:321"),
    Agent(
        "testosterone", "androgen",
        "testosterone: androgen-receptor agonist on osteoblast differentiation and, after "
        "aromatization to estradiol, ER agonist",
        routes={
            "im_cypionate": Route(
                "mg/week", {M: (25.0, 250.0)}, t=6.0,
                pk="100 mg/week IM: time-averaged serum T ~600 ng/dL in hypogonadal men "
                   "(Depo-Testosterone label; Snyder 2016 NEJM 374:611 targets 500-800)"),
            "gel": Route(
                "mg/day", {M: (20.0, 100.0), F: (0.5, 10.0)}, t=9.0,
                pk="1 % gel 50 mg/day applied: Cavg ~450-550 ng/dL (AndroGel label, ~10 % "
                   "absorbed); women 5 mg/day ~+40 ng/dL (Davis 2019 JCEM 104:4660, "
                   "Global Consensus Position Statement)"),
            "patch": Route(
                "mg/day", {M: (2.0, 6.0), F: (0.15, 0.3)}, t=125.0,
                pk="4 mg/day patch: Cavg ~500 ng/dL (Androderm label); women 300 ug/day "
                   "patch ~+40 ng/dL (Intrinsa, Braunstein 2005 Arch Intern Med 165:1582)"),
        },
        evidence="moderate for BMD (TTrials bone: Snyder 2017 JAMA Intern Med 177:471, vBMD "
                 "up); fractures: one RCT, against the BMD pathway (TRAVERSE, Snyder 2024 NEJM "
                 "390:203)",
        sources="Snyder 2017 JAMA Intern Med 177:471; Finkelstein 2013 NEJM 369:1011; "
                "Snyder 2024 N Engl J Med 390:203",
        warning="Testosterone: the one randomized trial with fracture outcomes (TRAVERSE "
                "fracture substudy, Snyder 2024 NEJM 390:203; 5,204 hypogonadal men 45-80 y, "
                "gel, median 3.2 y) found MORE clinical fractures with testosterone than placebo "
                "(3.50 % vs 2.46 %, HR 1.43, 95 % CI 1.04-1.97) although testosterone raises "
                "BMD. This model acts through BMD and turnover only, so its fracture results "
                "for testosterone arms run against that trial; do not read them as evidence of "
                "fracture prevention."),
    Agent(
        "anastrozole", "aromatase_inhibitor",
        "aromatase inhibitor: blocks conversion of testosterone/androstenedione to "
        "estradiol; in men raises testosterone (less estrogen feedback)",
        routes={"oral": Route(
            "mg/day", {F: (0.5, 10.0), M: (0.05, 10.0)}, ai=1.0 / 0.18,
            pk="1 mg/day suppresses plasma E2 by ~85 % in postmenopausal women (Geisler 2002 "
               "J Clin Oncol 20:751): x = dose/0.18 mg gives 1 - 1/(1 + x) = 0.85")},
        evidence="high for BMD loss in women (ATAC bone substudy, Eastell 2008 JCO 26:1051); "
                 "moderate in men (Burnett-Bowie 2009 JCEM 94:4785)",
        sources="Geisler 2002 J Clin Oncol 20:751; Eastell 2008 J Clin Oncol 26:1051; "
                "Burnett-Bowie 2009 J Clin Endocrinol Metab 94:4785; Leder 2004 JCEM 89:1174"),
    Agent(
        "raloxifene", "serm",
        "selective estrogen-receptor modulator: partial ER agonist in bone, antagonist in "
        "breast and uterus",
        routes={"oral": Route(
            "mg/day", {F: (30.0, 150.0)}, serm_occ=10.0 / 60.0, serm_efficacy=0.55, serm="raloxifene",
            pk="near-saturating occupancy at 60 mg (S/K_S = 10); 120 mg adds little BMD "
               "(MORE: spine +2.6 % vs placebo at 3 y, Ettinger 1999 JAMA 282:637)")},
        evidence="high (MORE: vertebral fracture RR 0.7; no hip-fracture benefit)",
        sources="Ettinger 1999 JAMA 282:637; Delmas 1997 NEJM 337:1641"),
    Agent(
        "bazedoxifene", "serm",
        "selective estrogen-receptor modulator: weak ER agonist in bone, antagonist in "
        "endometrium",
        routes={"oral": Route(
            "mg/day", {F: (10.0, 40.0)}, serm_occ=BZA_OCC_PER_MG, serm_efficacy=0.45,
            serm="bazedoxifene",
            pk="20 mg: spine +~1.4 % vs placebo at 2 y, less than raloxifene 60 mg (Miller "
               "2008 JBMR 23:525)")},
        evidence="high (Silverman 2008 JBMR 23:1923: vertebral fracture RR 0.58)",
        sources="Miller 2008 J Bone Miner Res 23:525; Silverman 2008 J Bone Miner Res 23:1923"),
    Agent(
        "conjugated_estrogens_bazedoxifene", "tsec",
        "tissue-selective estrogen complex (TSEC): CEE with bazedoxifene 20 mg; dose is the "
        "CEE content; no progestogen needed",
        routes={"oral": Route(
            "mg CE/day", {F: (0.3, 0.625)}, e2=64.0, serm_occ=20.0 * BZA_OCC_PER_MG,
            serm_efficacy=0.45, serm="bazedoxifene", pk_key="conjugated_estrogens.oral",
            serm_fixed=True,
            pk="CE exposure as conjugated_estrogens plus bazedoxifene 20 mg (fixed dose in "
               "every CE strength, so its occupancy is bazedoxifene 20 mg's): "
               "SMART-1, CE 0.45/BZA 20 spine +1.6 % vs placebo -1.8 % at 2 y (Lindsay 2009 "
               "Fertil Steril 92:1045)")},
        evidence="high for BMD (SMART-1, SMART-4, SMART-5); no fracture trial",
        sources="Lindsay 2009 Fertil Steril 92:1045; Pinkerton 2014 JCEM 99:E189"),
    Agent(
        "tamoxifen", "serm",
        "SERM: ER agonist in postmenopausal bone, antagonist against premenopausal estradiol",
        routes={"oral": Route(
            "mg/day", {F: (10.0, 40.0)}, serm_occ=10.0 / 20.0, serm_efficacy=0.6, serm="tamoxifen",
            pk="20 mg: preserves BMD in postmenopausal women (Love 1992 NEJM 326:852; ATAC "
               "comparator arm), loss in premenopausal women (Powles 1996 JCO 14:78)")},
        evidence="high for direction (RCT BMD substudies); fracture reduction modest",
        sources="Love 1992 NEJM 326:852; Powles 1996 J Clin Oncol 14:78; Eastell 2008"),
    Agent(
        "cjc_1295", "gh_secretagogue",
        "GHRH analogue (with DAC): raises GH and IGF-1; IGF-1 acts on osteoblast commitment",
        routes={"subcutaneous": Route(
            "mg/week", {F: (0.25, 4.0), M: (0.25, 4.0)}, igf=1.0,
            pk="single 30-60 ug/kg doses raised IGF-1 1.5-3 fold for 9-11 days (Teichman 2006 "
               "JCEM 91:799); ~+100 % per mg/week averaged (assumption)")},
        evidence="low (no BMD or fracture data in humans)",
        sources="Teichman 2006 J Clin Endocrinol Metab 91:799",
        warning="CJC-1295 has no human BMD or fracture evidence; its bone effect here is an "
                "assumption (small, wide uncertainty)."),
    Agent(
        "ipamorelin", "gh_secretagogue",
        "ghrelin-receptor agonist (GH secretagogue): raises GH and IGF-1",
        routes={"subcutaneous": Route(
            "ug/day", {F: (50.0, 1000.0), M: (50.0, 1000.0)}, igf=0.001,
            pk="no human IGF-1 dose-response published; +30 % at 300 ug/day assumed, by "
               "analogy with oral MK-677, which raised IGF-1 and turnover markers without a "
               "documented BMD gain (Murphy 1998 JCEM 83:320; Murphy 1999 JBMR 14:1182)")},
        evidence="low (no BMD or fracture data in humans)",
        sources="Murphy 1998 J Clin Endocrinol Metab 83:320; Murphy 1999 JBMR 14:1182",
        warning="Ipamorelin has no human BMD or fracture evidence; its bone effect here is an "
                "assumption (small, wide uncertainty)."),
)

AGENTS = {a.name: a for a in AGENTS_LIST}
