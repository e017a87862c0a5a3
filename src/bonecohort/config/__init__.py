"""Study files -> validated ``Study`` objects (checks.py: shared validation; regimens.py: arms;
study.py: the study)."""

from bonecohort.config.checks import ConfigError, read_text
from bonecohort.config.regimens import ARM_KEYS, REGIMEN_KEYS
from bonecohort.config.study import (
                                     ELIGIBILITY_KEYS,
                                     OUTCOME_KEYS,
                                     POPULATION_KEYS,
                                     STUDY_KEYS,
                                     Eligibility,
                                     OutcomeOptions,
                                     Study,
                                     TScoreReference,
                                     load_study,
                                     parse_study,
                                     study_from_table,
)

__all__ = ["ARM_KEYS", "ConfigError", "ELIGIBILITY_KEYS", "Eligibility", "OUTCOME_KEYS",
           "OutcomeOptions", "POPULATION_KEYS", "REGIMEN_KEYS", "STUDY_KEYS", "Study",
           "TScoreReference", "load_study", "parse_study", "read_text", "study_from_table"]
