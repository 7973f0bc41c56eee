"""HTTP adapters: REST, WHIP/WHEP and the web pages, each a thin layer over the node's parts."""
