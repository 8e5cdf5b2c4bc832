"""Model servers agenteval starts and stops itself: the process lifecycle (``servers``), one
module per engine (``engines``), the model files they need (``downloads``, the random-weight
``testmodel``), and the chat model the runner drives around a provider's client and its server
(``served``). It uses the model contract (``agenteval.models``); the models never import it.
"""
