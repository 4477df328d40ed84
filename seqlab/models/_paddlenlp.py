"""What the PaddleNLP plugins (pnlp_llama, pnlp_mamba) share: the extra they need, a quiet import.

Not a model module: the registry imports only the plugin modules, which import paddlenlp through
:func:`import_paddlenlp` when a model is built, never at import.
"""

from __future__ import annotations

import warnings

from seqlab.registry import import_requirement

#: The optional package: (module, pip requirement); see seqlab.registry.missing_requirement.
PADDLENLP = ("paddlenlp", "seqlab[paddlenlp]")


def import_paddlenlp(model_cls: type, module: str):
    """Import ``module`` of paddlenlp for ``model_cls``, or raise SeqlabError with the install hint."""
    with warnings.catch_warnings():
        # paddlenlp imports pip, whose import makes setuptools' distutils shim warn: not ours to fix.
        warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")
        imported = import_requirement(model_cls, module)
    # PaddleNLP 3.0.0b4's Llama MLP calls an API that Paddle 3.3 deprecates; a user cannot act on it.
    warnings.filterwarnings("ignore", message=r"(?s).*paddle\.incubate\.nn\.functional\.swiglu")
    return imported
