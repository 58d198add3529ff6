"""The numbers the notebooks show and the verdicts they draw, computed from runs' tables (pandas): one module per job.

- :mod:`hdm.analysis.stats`: statistics over runs and seeds (Fig. 2's loss/accuracy consistency, seed summaries,
  paired differences, learning-curve gains, orders of methods).
- :mod:`hdm.analysis.errors`: error analyses of predictions (per-joint errors, visibility, misses, the joints
  Fig. 1 and Fig. 3 show, exact vs. entropic solver on the same maps).
- :mod:`hdm.analysis.mechanism`: why distribution matching loses, in the paper's terms: finding vs placing a
  joint, and the shift test of the relu-normalised EMD's pull toward all-≤ 0 maps.
- :mod:`hdm.analysis.readings`: the "Reading" paragraphs and Table 1 beside the paper; verdicts computed, never typed.
- :mod:`hdm.analysis.claims`: one function per supplementary claim, its verdict and numbers at a scale, from the
  tables the notebooks write; :mod:`hdm.analysis.in_short`: the README's opening summary from them.
- :mod:`hdm.analysis.verdicts`: the claim-by-claim verdict table; with :mod:`hdm.analysis.headlines` (the README's
  result tables) and :mod:`hdm.analysis.tables` (reading and formatting) it writes ``results/verdicts.md`` and
  ``results/readme/`` (``python -m hdm.analysis.verdicts``).
- :mod:`hdm.analysis.check`: a rerun's tables against the committed ones (``python -m hdm.analysis.check``).

What runs (the experiment plans) lives in :mod:`hdm.experiments`; it is re-exported here, as is every public name
of the first three modules, so that notebooks keep calling ``analysis.<name>``.
"""

from hdm.analysis.errors import (VISIBILITY, VISIBLE, default_joint_names, error_by_visibility, error_summary,
                                 first_indices, joint_errors, miss_breakdown, person_size, pick_joints,
                                 solver_agreement, split_picks, stack_joint_errors, worst_joints)
from hdm.analysis.mechanism import (FOUND_THRESHOLD, finding_placing, found_mask, no_positive_share, placing_errors,
                                    shift_test)
from hdm.analysis.readings import (CONCENTRATION, SHORT_LABELS, dynamics_reading, fig1_reading, fig2_claim_holds,
                                   fig2_reading, fig3_reading, paper_qualitative_rows, table1_beside_paper,
                                   table1_reading, theorem1_reading)
from hdm.analysis.stats import (DYNAMICS_COLUMNS, check_columns, consistency_table, decoder_ablation, epoch_window,
                                final_epoch_table, loss_accuracy_consistency, mean_std_strings, paired_difference,
                                rank_order, stack_metrics, strictly_ordered, summarise_over_seeds, sweep_summary,
                                tracking_accuracy, window_gains, evaluation_rows, resolution_table,
                                training_stability)
from hdm.experiments import (REPAIRS, STRICT_SCREEN, best_relu_variant, best_repair, distinct_from_ours,
                             dynamics_reference, dynamics_screen_epochs, dynamics_suppliers, dynamics_sweep,
                             longer_baseline, mechanism_screens, our_setting, repair_label, screened, sweep_accuracy, variant_value,
                             DECODER_CANDIDATES, LONGER, PAPER_RESOLUTION, choose_decoders, decoder_candidates,
                             longer_models, model_label, report_split, resolution_screen, table1_extra_models,
                             table1_pairs)

__all__ = [
    "VISIBILITY", "VISIBLE", "default_joint_names", "error_by_visibility", "error_summary", "first_indices",
    "joint_errors", "miss_breakdown", "person_size", "pick_joints", "solver_agreement", "split_picks", "stack_joint_errors",
    "worst_joints",
    "FOUND_THRESHOLD", "finding_placing", "found_mask", "no_positive_share", "placing_errors", "shift_test",
    "CONCENTRATION", "SHORT_LABELS", "dynamics_reading", "fig1_reading", "fig2_claim_holds", "fig2_reading", "fig3_reading",
    "paper_qualitative_rows", "table1_beside_paper", "table1_reading", "theorem1_reading",
    "DYNAMICS_COLUMNS", "check_columns", "consistency_table", "decoder_ablation", "epoch_window", "final_epoch_table",
    "loss_accuracy_consistency", "mean_std_strings", "paired_difference", "rank_order", "stack_metrics",
    "strictly_ordered", "summarise_over_seeds", "sweep_summary", "tracking_accuracy", "training_stability", "window_gains",
    "best_relu_variant", "distinct_from_ours", "dynamics_screen_epochs", "dynamics_suppliers", "dynamics_sweep",
    "longer_baseline", "our_setting", "screened", "sweep_accuracy", "variant_value", "REPAIRS", "STRICT_SCREEN", "best_repair",
    "mechanism_screens", "repair_label", "dynamics_reference",
    "evaluation_rows", "resolution_table", "table1_pairs", "DECODER_CANDIDATES", "LONGER", "PAPER_RESOLUTION", "choose_decoders", "decoder_candidates",
    "longer_models", "model_label", "report_split", "resolution_screen", "table1_extra_models",
]  # fmt: skip
