"""OpenADR 2.0b VTN adapter: messages <-> XML, EiRegisterParty/EiEvent/EiReport/EiOpt/OadrPoll, push, signatures."""
