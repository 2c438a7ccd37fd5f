-- spreadedge bench: the current cross-exchange spreads
select * from market.current_spreads;
