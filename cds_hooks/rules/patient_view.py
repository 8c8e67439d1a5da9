"""patient-view: the rules in the order their cards are built (cards are then sorted by urgency).

Each rule is a pure function (picture, knowledge, today) -> drafts, kept in a module by topic; the
words come from knowledge.yaml and the conditions from ../shared/card-contract.md ("Rule codes").
"""

from __future__ import annotations

from .biomarkers import biomarker_gbrca, biomarker_her2_low, biomarker_pdl1, biomarker_pik3ca_esr1
from .metastases import bone_complication, bone_targeted_agent, brain_metastasis, oligometastatic, staging_workup
from .receptors import biopsy_reassessment, her2_equivocal, receptor_discordance, receptor_status_missing
from .summary import summary
from .therapy import resistance_risk, therapy_options

RULES = (
    summary,
    receptor_status_missing,
    biopsy_reassessment,
    receptor_discordance,
    her2_equivocal,
    biomarker_gbrca,
    biomarker_pdl1,
    biomarker_pik3ca_esr1,
    biomarker_her2_low,
    therapy_options,
    resistance_risk,
    bone_targeted_agent,
    bone_complication,
    brain_metastasis,
    oligometastatic,
    staging_workup,
)
